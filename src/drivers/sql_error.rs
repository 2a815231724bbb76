//! Turning sqlx errors into [`DriverError`]s (the MySQL driver; its codes are decided by its
//! own function), and whose login a connection uses ([`Login`], shared with the PostgreSQL and
//! Redis drivers).

use sqlx::error::DatabaseError;

use super::redact::Redactor;
use super::{DbSystem, DriverError, DriverErrorKind, Phase};

/// Whose login a connection uses: decides what an authentication failure means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Login {
    /// The connection's admin user.
    Admin,
    /// A rotated user, being verified.
    Target,
}

impl Login {
    /// The kind for "the server refused this login".
    pub(crate) fn rejected(self) -> DriverErrorKind {
        match self {
            Self::Admin => DriverErrorKind::AdminLoginRejected,
            Self::Target => DriverErrorKind::LoginRejected,
        }
    }
}

/// Classifies `err`; `database_kind` decides errors the server returned. The detail is
/// scrubbed by `redactor`.
pub(crate) fn from_sqlx(
    err: &sqlx::Error,
    system: DbSystem,
    phase: Phase,
    login: Login,
    redactor: &Redactor<'_>,
    database_kind: fn(&dyn DatabaseError, Login) -> DriverErrorKind,
) -> DriverError {
    let (kind, detail) = match err {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| format!("[{c}] ")).unwrap_or_default();
            (
                database_kind(db.as_ref(), login),
                format!("{code}{}", db.message()),
            )
        }
        // rustls reports handshake and certificate failures as InvalidData.
        sqlx::Error::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            (DriverErrorKind::Tls, with_advice(e.to_string(), e))
        }
        sqlx::Error::Io(e) => (DriverErrorKind::Unreachable, e.to_string()),
        sqlx::Error::Tls(e) => (DriverErrorKind::Tls, with_advice(e.to_string(), e.as_ref())),
        sqlx::Error::Configuration(e) => (DriverErrorKind::InvalidInput, e.to_string()),
        sqlx::Error::InvalidArgument(e) => (DriverErrorKind::InvalidInput, e.clone()),
        sqlx::Error::WorkerCrashed => (DriverErrorKind::Unreachable, err.to_string()),
        other => (DriverErrorKind::Server, other.to_string()),
    };
    DriverError::new(kind, system, phase, redactor.scrub(&detail))
}

/// A TLS failure's text, followed by what to fix when it is a refused certificate (sqlx takes
/// only root certificates, so a self-signed server certificate cannot be pinned as the
/// upstream's can).
fn with_advice(detail: String, error: &(dyn std::error::Error + 'static)) -> String {
    match crate::net::pinned::driver_advice(error, false) {
        Some(advice) => format!("{detail}: {advice}"),
        None => detail,
    }
}

/// The error for a connect or statement that outlived its timeout.
/// Awaits `connecting` for at most [`super::CONNECT_TIMEOUT`], mapping its failure as
/// [`from_sqlx`] does and a timeout as [`timed_out`].
pub(crate) async fn connect_within<C>(
    connecting: impl std::future::Future<Output = Result<C, sqlx::Error>>,
    system: DbSystem,
    phase: Phase,
    login: Login,
    redactor: &Redactor<'_>,
    database_kind: fn(&dyn DatabaseError, Login) -> DriverErrorKind,
) -> Result<C, DriverError> {
    match tokio::time::timeout(super::CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => {
            Err(from_sqlx(&e, system, phase, login, redactor, database_kind).before_sending())
        }
        Err(_) => Err(timed_out(system, phase, "the connection").before_sending()),
    }
}

pub(crate) fn timed_out(system: DbSystem, phase: Phase, what: &str) -> DriverError {
    DriverError::new(
        DriverErrorKind::Timeout,
        system,
        phase,
        format!("no answer to {what} in time"),
    )
}
