//! Whose login a connection uses ([`Login`]) and the timeout error, shared by the SQL, Redis
//! and MongoDB drivers.

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

/// The error for a connect or statement that outlived its timeout.
pub(crate) fn timed_out(system: DbSystem, phase: Phase, what: &str) -> DriverError {
    DriverError::new(
        DriverErrorKind::Timeout,
        system,
        phase,
        format!("no answer to {what} in time"),
    )
}
