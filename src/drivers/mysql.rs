//! `mysql-credentials` on MySQL or MariaDB: two accounts, one per slot, with a configurable host
//! part (`'<user>'@'<host part>'`, `%` by default; upstream always used `%`).
//!
//! - **apply**: as the admin, `ALTER USER '<user>'@'<host>' IDENTIFIED BY '<password>'`
//!   ([`MysqlPasswordForm::Plaintext`], the default), or
//!   `ALTER USER '<user>'@'<host>' IDENTIFIED BY PASSWORD '*<hash>'`
//!   ([`MysqlPasswordForm::NativeHash`]). The statement takes no bind parameters, so values are
//!   literals escaped for the session's `sql_mode`, which the driver reads first
//!   (`NO_BACKSLASH_ESCAPES` changes what `\` means).
//! - **verify**: a new connection logged in as the account, then `SELECT 1`.
//! - **revoke**: the same `ALTER USER` with a random password nobody keeps (no `DROP USER`:
//!   rotator does not own the account's grants).
//!
//! With the plaintext form the password crosses the connection inside the statement (use TLS),
//! and MariaDB writes the statement verbatim to its general log and binary log when those are
//! on. The client (mysql_async, built without its `tracing` feature) logs no statements.
//!
//! TLS is OpenSSL's (mysql_async on native-tls): MySQL switches to TLS inside its own handshake,
//! so the driver cannot run the session over a stream it secured itself, as the PostgreSQL
//! driver does, and no Rust MySQL client takes a rustls verifier. OpenSSL trusts a self-signed
//! server certificate (CA:TRUE, as `openssl req -x509` makes it) found in the `ca_file` as the
//! server's own, its host name and dates still checked, so a `ca_file` pins it; the system
//! roots stay trusted as well. The client never switches to the server's unix socket
//! (`prefer_socket` off), which would skip TLS.

use std::sync::Arc;
use mysql_async::prelude::Queryable as _;
use mysql_async::{Conn, IoError, OptsBuilder, SslOpts};

use super::quote::{mysql_account, mysql_literal};
use super::redact::Redactor;
use super::sql_error::{Login, timed_out};
use super::tls::{OPENSSL_CERTIFICATE_ADVICE, OpensslFailure, openssl_failure};
use super::{
    BuildContext, Built, CONNECT_TIMEOUT, ConnectionConfig, Credential, DbSystem, Descriptor,
    Driver, DriverError, DriverErrorKind, OPERATION_TIMEOUT, Operations, Phase, TlsMode, invalid,
};
use crate::drivers::password::PasswordPolicy;
use crate::proto::{RotationType, SqlCredentialsParameters, rotation_parameters};
use crate::rotation::{CredentialShape, SecretSource};
use crate::secret::SecretString;

const SYSTEM: DbSystem = DbSystem::new("mysql");

/// The connection option naming the accounts' host part (`%` when absent).
pub const HOST_PART_OPTION: &str = "mysql_host_part";
/// The connection option choosing how passwords travel: `plaintext` (default) or
/// `native-hash`.
pub const PASSWORD_FORM_OPTION: &str = "mysql_password_form";

/// `mysql-credentials` on MySQL or MariaDB.
pub static DESCRIPTOR: Descriptor = Descriptor {
    app: "mysql",
    default_port: 3306,
    rotation_types: &[RotationType::MysqlCredentials],
    shape: CredentialShape::UsernamePassword,
    source: SecretSource::Chosen,
    system: SYSTEM,
    operations: Operations {
        apply: "ALTER USER",
        verify: "LOGIN",
        revoke: "ALTER USER",
        probe: "SELECT",
    },
    options: &[HOST_PART_OPTION, PASSWORD_FORM_OPTION],
    build,
};

fn build(ctx: &BuildContext<'_>) -> Result<Built, DriverError> {
    let rotation_parameters::Kind::MysqlCredentials(parameters) = ctx.parameters else {
        return Err(ctx.wrong_parameters(SYSTEM));
    };
    let options = MysqlOptions::from_table(ctx.options)?;
    let driver = MysqlDriver::new(ctx.connection.clone(), parameters, options)?;
    let usernames = driver.usernames.clone();
    Ok(Built::chosen(
        driver,
        usernames,
        parameters.password_requirements.as_ref(),
    ))
}

/// How the new password travels in `ALTER USER`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MysqlPasswordForm {
    /// `IDENTIFIED BY '<password>'`: the server hashes it with the account's authentication
    /// plugin (MySQL 8 `caching_sha2_password`, MariaDB `mysql_native_password`). Works
    /// everywhere; the plaintext is in the statement text.
    #[default]
    Plaintext,
    /// `IDENTIFIED BY PASSWORD '*<SHA1(SHA1(password))>'`, computed here: the plaintext never
    /// reaches the server or its logs (as with PostgreSQL's SCRAM verifier). The account uses
    /// `mysql_native_password` afterwards, which MySQL 8.4 disables by default and MySQL 9
    /// removed: for MariaDB and older MySQL.
    NativeHash,
}

/// MySQL-specific driver settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MysqlOptions {
    /// The host part of both accounts (`%` by default).
    pub host_part: String,
    /// How the password is sent.
    pub password_form: MysqlPasswordForm,
}

impl MysqlOptions {
    /// Reads `mysql_host_part` and `mysql_password_form` from a connection's options.
    ///
    /// # Errors
    ///
    /// [`DriverErrorKind::InvalidInput`] naming the option (never its value).
    pub fn from_table(options: &toml::Table) -> Result<Self, DriverError> {
        let mut parsed = Self::default();
        if let Some(value) = options.get(HOST_PART_OPTION) {
            let host = value
                .as_str()
                .filter(|h| !h.trim().is_empty())
                .ok_or_else(|| {
                    invalid(
                        SYSTEM,
                        Phase::Build,
                        format!("{HOST_PART_OPTION} must be a non-empty string"),
                    )
                })?;
            host.clone_into(&mut parsed.host_part);
        }
        if let Some(value) = options.get(PASSWORD_FORM_OPTION) {
            parsed.password_form = match value.as_str() {
                Some("plaintext") => MysqlPasswordForm::Plaintext,
                Some("native-hash") => MysqlPasswordForm::NativeHash,
                _ => {
                    return Err(invalid(
                        SYSTEM,
                        Phase::Build,
                        format!("{PASSWORD_FORM_OPTION} must be plaintext or native-hash"),
                    ));
                }
            };
        }
        Ok(parsed)
    }
}

impl Default for MysqlOptions {
    fn default() -> Self {
        Self {
            host_part: "%".to_owned(),
            password_form: MysqlPasswordForm::default(),
        }
    }
}

/// The MySQL/MariaDB driver of one rotation.
#[derive(Debug, Clone)]
pub struct MysqlDriver {
    connection: Arc<ConnectionConfig>,
    /// `username1`, `username2`, trimmed.
    usernames: [String; 2],
    /// The account host part and the password form.
    options: MysqlOptions,
}

// === impl MysqlDriver ===

impl MysqlDriver {
    /// A driver for `'<username1>'@'<host part>'` and `'<username2>'@'<host part>'`.
    ///
    /// # Errors
    ///
    /// [`DriverErrorKind::InvalidInput`]: a missing username, equal usernames, a username equal
    /// to the admin, NUL in a name, or a custom `rotationStatement` (upstream spliced the password
    /// into it unescaped; the local driver quotes it itself).
    pub fn new(
        connection: impl Into<Arc<ConnectionConfig>>,
        parameters: &SqlCredentialsParameters,
        options: MysqlOptions,
    ) -> Result<Self, DriverError> {
        let connection: Arc<ConnectionConfig> = connection.into();
        if parameters.rotation_statement.is_some() {
            return Err(invalid(
                SYSTEM,
                Phase::Build,
                "custom rotation statements are not supported by the local driver; set the account host part instead",
            ));
        }
        let usernames = [
            parameters.username1.trim().to_owned(),
            parameters.username2.trim().to_owned(),
        ];
        for u in &usernames {
            mysql_account(u, &options.host_part, true)
                .map_err(|e| invalid(SYSTEM, Phase::Build, format!("account {u:?}: {e}")))?;
        }
        Ok(Self {
            connection,
            usernames,
            options,
        })
    }

    /// The host part of the accounts.
    pub fn host_part(&self) -> &str {
        &self.options.host_part
    }

    fn options(&self, username: &str, password: &str) -> OptsBuilder {
        let c = &self.connection;
        let ssl = match c.tls.mode {
            TlsMode::Disable => None,
            TlsMode::Require => Some(
                SslOpts::default()
                    .with_danger_accept_invalid_certs(true)
                    .with_danger_skip_domain_validation(true),
            ),
            TlsMode::VerifyFull => Some(SslOpts::default().with_root_certs(
                c.ca_pem()
                    .map(|pem| vec![pem.as_bytes().to_vec().into()])
                    .unwrap_or_default(),
            )),
        };
        OptsBuilder::default()
            .ip_or_hostname(c.host.trim_start_matches('[').trim_end_matches(']'))
            .tcp_port(c.port)
            .user(Some(username))
            .pass(Some(password))
            .db_name((!c.database.is_empty()).then(|| c.database.clone()))
            // On loopback the client would otherwise move to the server's unix socket, without
            // TLS.
            .prefer_socket(false)
            .stmt_cache_size(0_usize)
            .ssl_opts(ssl)
    }

    async fn connect(
        &self,
        phase: Phase,
        login: Login,
        username: &str,
        password: &SecretString,
        redactor: &Redactor<'_>,
    ) -> Result<Conn, DriverError> {
        let options = self.options(username, password.expose());
        match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(options)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(classify(&e, phase, login, redactor).before_sending()),
            Err(_) => Err(timed_out(SYSTEM, phase, "the connection").before_sending()),
        }
    }

    /// Sets `password` on `username` as the admin: reads the session's `sql_mode`, then runs the
    /// `ALTER USER` with the literal escaped for it.
    async fn set_password(
        &self,
        phase: Phase,
        username: &str,
        password: &SecretString,
        redactor: &Redactor<'_>,
    ) -> Result<(), DriverError> {
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
        let result = async {
            let backslash_escapes = !no_backslash_escapes(&mut conn, phase, redactor).await?;
            let account = mysql_account(username, &self.options.host_part, backslash_escapes)
                .map_err(|e| invalid(SYSTEM, phase, e.to_string()))?;
            let (clause, value) = match self.options.password_form {
                MysqlPasswordForm::Plaintext => ("IDENTIFIED BY", password.clone()),
                MysqlPasswordForm::NativeHash => {
                    ("IDENTIFIED BY PASSWORD", native_password_hash(password))
                }
            };
            let literal = mysql_literal(value.expose(), backslash_escapes)
                .map_err(|e| invalid(SYSTEM, phase, format!("password: {e}")))?;
            let sql = SecretString::new(format!("ALTER USER {account} {clause} {literal}"));
            // The server may echo the escaped form, quotes or not.
            let inner = literal
                .get(1..literal.len().saturating_sub(1))
                .unwrap_or_default();
            let redactor = redactor.also(&literal).also(inner);
            run(&mut conn, phase, Login::Admin, sql.expose(), &redactor).await
        }
        .await;
        close(conn).await;
        result
    }
}

impl Driver for MysqlDriver {
    async fn apply(&self, credential: &Credential) -> Result<(), DriverError> {
        let redactor = Redactor::new([
            credential.secret.expose(),
            self.connection.admin_password.expose(),
        ]);
        self.set_password(Phase::Apply, &credential.id, &credential.secret, &redactor)
            .await
    }

    async fn verify(&self, credential: &Credential) -> Result<(), DriverError> {
        let redactor = Redactor::new([
            credential.secret.expose(),
            self.connection.admin_password.expose(),
        ]);
        let mut conn = self
            .connect(
                Phase::Verify,
                Login::Target,
                &credential.id,
                &credential.secret,
                &redactor,
            )
            .await?;
        let result = run(
            &mut conn,
            Phase::Verify,
            Login::Target,
            "SELECT 1",
            &redactor,
        )
        .await;
        close(conn).await;
        result
    }

    async fn revoke(&self, id: &str) -> Result<(), DriverError> {
        let discarded = PasswordPolicy::default_for(RotationType::MysqlCredentials).generate();
        let redactor = Redactor::new([discarded.expose(), self.connection.admin_password.expose()]);
        self.set_password(Phase::Revoke, id, &discarded, &redactor)
            .await
    }

    /// Logs in as the admin and runs `SELECT 1`.
    async fn probe(&self) -> Result<(), DriverError> {
        let c = &self.connection;
        let redactor = Redactor::new([c.admin_password.expose()]);
        let mut conn = self
            .connect(
                Phase::Probe,
                Login::Admin,
                &c.admin_username,
                &c.admin_password,
                &redactor,
            )
            .await?;
        let result = run(&mut conn, Phase::Probe, Login::Admin, "SELECT 1", &redactor).await;
        close(conn).await;
        result
    }
}

/// The `mysql_native_password` hash: `*` and the upper-case hex of SHA1(SHA1(password)), as
/// `PASSWORD()` computes it.
pub fn native_password_hash(password: &SecretString) -> SecretString {
    use sha1::{Digest as _, Sha1};
    let stage2 = Sha1::digest(Sha1::digest(password.expose().as_bytes()));
    let hex: String = stage2.iter().map(|b| format!("{b:02X}")).collect();
    SecretString::new(format!("*{hex}"))
}

/// Whether the session treats `\` as an ordinary character in string literals.
async fn no_backslash_escapes(
    conn: &mut Conn,
    phase: Phase,
    redactor: &Redactor<'_>,
) -> Result<bool, DriverError> {
    let query = conn.query_first::<String, _>("SELECT CAST(@@SESSION.sql_mode AS CHAR)");
    match tokio::time::timeout(OPERATION_TIMEOUT, query).await {
        Ok(Ok(mode)) => Ok(mode.unwrap_or_default()
            .split(',')
            .any(|m| m.trim().eq_ignore_ascii_case("NO_BACKSLASH_ESCAPES"))),
        Ok(Err(e)) => Err(classify(&e, phase, Login::Admin, redactor)),
        Err(_) => Err(timed_out(SYSTEM, phase, "the sql_mode query")),
    }
}

/// Runs `sql` over the text protocol (nothing prepared or cached).
async fn run(
    conn: &mut Conn,
    phase: Phase,
    login: Login,
    sql: &str,
    redactor: &Redactor<'_>,
) -> Result<(), DriverError> {
    match tokio::time::timeout(OPERATION_TIMEOUT, conn.query_drop(sql)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(classify(&e, phase, login, redactor)),
        Err(_) => Err(timed_out(SYSTEM, phase, "the statement")),
    }
}

/// Best effort: the server ends the session on its own if the goodbye is lost.
async fn close(conn: Conn) {
    let _ = tokio::time::timeout(CONNECT_TIMEOUT, conn.disconnect()).await;
}

/// Classifies a client error; the detail is scrubbed by `redactor`.
fn classify(
    error: &mysql_async::Error,
    phase: Phase,
    login: Login,
    redactor: &Redactor<'_>,
) -> DriverError {
    use mysql_async::{DriverError as ClientError, Error};
    let (kind, detail) = match error {
        Error::Server(e) => (
            server_kind(e.code, login),
            format!("[{}] {}", e.code, e.message),
        ),
        Error::Io(IoError::Io(io)) => (
            match io.kind() {
                std::io::ErrorKind::TimedOut => DriverErrorKind::Timeout,
                _ => DriverErrorKind::Unreachable,
            },
            io.to_string(),
        ),
        Error::Io(IoError::Tls(tls)) => match openssl_failure(tls) {
            Some(OpensslFailure::Certificate) => (
                DriverErrorKind::Tls,
                format!("{tls}: {OPENSSL_CERTIFICATE_ADVICE}"),
            ),
            Some(OpensslFailure::Handshake) => (DriverErrorKind::Tls, tls.to_string()),
            // The connection broke during the handshake.
            None => (DriverErrorKind::Unreachable, tls.to_string()),
        },
        Error::Driver(ClientError::NoClientSslFlagFromServer) => (
            DriverErrorKind::Tls,
            "the server does not accept TLS: enable TLS on the server, or set tls = \"disable\" \
             (the password then crosses the network in clear)"
                .to_owned(),
        ),
        Error::Driver(ClientError::ConnectionClosed) => {
            (DriverErrorKind::Unreachable, error.to_string())
        }
        Error::Driver(other) => (DriverErrorKind::Server, other.to_string()),
        Error::Url(e) => (DriverErrorKind::InvalidInput, e.to_string()),
        Error::Other(e) => (DriverErrorKind::Server, e.to_string()),
    };
    DriverError::new(kind, SYSTEM, phase, redactor.scrub(&detail))
}

/// Classifies a server error by its MySQL error number.
fn server_kind(number: u16, login: Login) -> DriverErrorKind {
    match number {
        // ER_ACCESS_DENIED_ERROR, ER_ACCOUNT_HAS_BEEN_LOCKED (MariaDB), ER_MUST_CHANGE_PASSWORD_LOGIN
        1045 | 4151 | 1862 => login.rejected(),
        // ER_CANNOT_USER: "Operation ALTER USER failed for …" (no such account)
        1396 => DriverErrorKind::UserNotFound,
        // ER_DBACCESS_DENIED_ERROR, ER_TABLEACCESS_DENIED_ERROR, ER_SPECIFIC_ACCESS_DENIED_ERROR
        1044 | 1142 | 1227 => DriverErrorKind::PermissionDenied,
        // ER_NOT_VALID_PASSWORD (password validation plugins)
        1819 => DriverErrorKind::PasswordRejected,
        // ER_CON_COUNT_ERROR, ER_SERVER_SHUTDOWN, ER_LOCK_WAIT_TIMEOUT, ER_LOCK_DEADLOCK,
        // ER_TOO_MANY_USER_CONNECTIONS
        1040 | 1053 | 1205 | 1213 | 1203 => DriverErrorKind::ServerUnavailable,
        _ => DriverErrorKind::Server,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_hash_matches_the_servers_password_function() {
        // `SELECT PASSWORD('pencil')` on MariaDB 10.11.
        assert_eq!(
            native_password_hash(&SecretString::new("pencil")).expose(),
            "*7614BE58636C810A9D8970A50B3B2A78450413E4"
        );
    }
}
