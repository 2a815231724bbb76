//! The driver error: what failed, where, and whether retrying can help. Never holds a secret:
//! every text from a peer goes through `Redactor::scrub`
//! before it lands here.

use std::fmt;

/// The target system, as OpenTelemetry's `db.system` names it (or the peer's name for systems
/// that are not databases, e.g. `aws.iam`). Each driver declares its own in its descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DbSystem(&'static str);

/// The driver operation, one span each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Setting a credential on the target.
    Apply,
    /// Logging in with a credential on a new connection.
    Verify,
    /// Making a credential unusable.
    Revoke,
    /// Logging in as the admin, changing nothing.
    Probe,
    /// Asking a provider for a new secret it creates (issued secrets).
    Issue,
    /// Listing a provider's secrets (issued secrets: recovery's reconciliation).
    List,
    /// Building a driver from its configuration (nothing is sent).
    Build,
}

/// What kind of failure happened; decides [`DriverError::is_transient`] and
/// [`DriverError::reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DriverErrorKind {
    /// The server could not be reached, or the connection broke (transient).
    Unreachable,
    /// No answer within the connect or operation timeout (transient). After an apply the outcome
    /// is unknown: verify, or apply again.
    Timeout,
    /// The server is up but cannot serve now: shutting down, too many connections, loading,
    /// lock contention (transient).
    ServerUnavailable,
    /// Redis took the change but could not write its ACL file (transient; applying again
    /// retries the save).
    PersistFailed,
    /// The admin login was rejected (permanent: fix the connection's credentials).
    AdminLoginRejected,
    /// The target user's login was rejected: wrong password, locked, expired or not allowed to
    /// log in (permanent).
    LoginRejected,
    /// The target user does not exist (permanent).
    UserNotFound,
    /// The admin may not change the target, or the target may not use the database (permanent).
    PermissionDenied,
    /// The target's password policy refused the password (permanent; a new password may pass).
    PasswordRejected,
    /// The provider holds as many secrets as it allows (permanent until one is removed).
    LimitReached,
    /// TLS could not be set up or the certificate was refused (permanent).
    Tls,
    /// The driver's input is unusable: a bad parameter, username or password (permanent;
    /// nothing was sent).
    InvalidInput,
    /// Any other error the server returned (permanent).
    Server,
}

/// A driver failure, classified. Its text names the system, phase and user, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{system} {phase} failed ({}): {detail}", .kind.description())]
pub struct DriverError {
    kind: DriverErrorKind,
    system: DbSystem,
    phase: Phase,
    detail: String,
    /// The failure happened before any change could reach the target (while connecting or
    /// logging in): a transient failure that leaves no doubt about the outcome.
    before_sending: bool,
}

// === impl DbSystem ===

impl DbSystem {
    /// A system by its OpenTelemetry name.
    pub const fn new(name: &'static str) -> Self {
        Self(name)
    }

    /// The OpenTelemetry `db.system` value.
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for DbSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Phase ===

impl Phase {
    /// The phase name used in span names and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Apply => "apply",
            Self::Verify => "verify",
            Self::Revoke => "revoke",
            Self::Probe => "probe",
            Self::Issue => "issue",
            Self::List => "list",
            Self::Build => "build",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl DriverErrorKind ===

impl DriverErrorKind {
    /// Whether the same call may succeed later without any change of configuration.
    pub fn is_transient(self) -> bool {
        match self {
            Self::Unreachable | Self::Timeout | Self::ServerUnavailable | Self::PersistFailed => {
                true
            }
            Self::AdminLoginRejected
            | Self::LoginRejected
            | Self::UserNotFound
            | Self::PermissionDenied
            | Self::PasswordRejected
            | Self::LimitReached
            | Self::Tls
            | Self::InvalidInput
            | Self::Server => false,
        }
    }

    /// The stable reason, UPPER_SNAKE_CASE, for `ErrorInfo.reason` and the `error.type` span
    /// attribute.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Unreachable => "DRIVER_UNREACHABLE",
            Self::Timeout => "DRIVER_TIMEOUT",
            Self::ServerUnavailable => "DRIVER_SERVER_UNAVAILABLE",
            Self::PersistFailed => "DRIVER_PERSIST_FAILED",
            Self::AdminLoginRejected => "DRIVER_ADMIN_LOGIN_REJECTED",
            Self::LoginRejected => "DRIVER_LOGIN_REJECTED",
            Self::UserNotFound => "DRIVER_USER_NOT_FOUND",
            Self::PermissionDenied => "DRIVER_PERMISSION_DENIED",
            Self::PasswordRejected => "DRIVER_PASSWORD_REJECTED",
            Self::LimitReached => "DRIVER_LIMIT_REACHED",
            Self::Tls => "DRIVER_TLS",
            Self::InvalidInput => "DRIVER_INVALID_INPUT",
            Self::Server => "DRIVER_SERVER_ERROR",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Self::Unreachable => "server unreachable",
            Self::Timeout => "timed out",
            Self::ServerUnavailable => "server unavailable",
            Self::PersistFailed => "could not persist the change",
            Self::AdminLoginRejected => "admin login rejected",
            Self::LoginRejected => "login rejected",
            Self::UserNotFound => "user not found",
            Self::PermissionDenied => "permission denied",
            Self::PasswordRejected => "password rejected by the server's policy",
            Self::LimitReached => "the provider's limit of secrets is reached",
            Self::Tls => "TLS failure",
            Self::InvalidInput => "invalid input",
            Self::Server => "server error",
        }
    }
}

// === impl DriverError ===

impl DriverError {
    /// A new error. `detail` must hold no secret: scrub peer text with
    /// `Redactor::scrub` first. Public so that fakes of
    /// [`Driver`](super::Driver) in engine tests can fail with any kind.
    pub fn new(
        kind: DriverErrorKind,
        system: DbSystem,
        phase: Phase,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            system,
            phase,
            detail: detail.into(),
            before_sending: false,
        }
    }

    /// Marks the failure as one that happened before any change was sent (connecting, logging
    /// in): the target is certainly unchanged.
    #[must_use]
    pub fn before_sending(mut self) -> Self {
        self.before_sending = true;
        self
    }

    /// Whether the target may have taken the change despite the failure: false for a failure
    /// while connecting or logging in, and for a refusal (a permanent error means the target
    /// refused); true for a transient failure once a change may have been sent (a timeout, a
    /// dropped connection).
    pub fn may_have_changed_target(&self) -> bool {
        self.is_transient() && !self.before_sending
    }

    /// The kind of failure.
    pub fn kind(&self) -> DriverErrorKind {
        self.kind
    }

    /// The target system.
    pub fn system(&self) -> DbSystem {
        self.system
    }

    /// The phase that failed.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The scrubbed detail (a server message or what the driver refused).
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// Whether retrying the same call later may succeed (network, timeouts, busy server).
    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }

    /// The stable reason, e.g. `DRIVER_LOGIN_REJECTED`.
    pub fn reason(&self) -> &'static str {
        self.kind.reason()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_system_phase_and_kind() {
        let e = DriverError::new(
            DriverErrorKind::UserNotFound,
            DbSystem::new("postgresql"),
            Phase::Apply,
            "role \"app\" does not exist",
        );
        assert_eq!(
            e.to_string(),
            "postgresql apply failed (user not found): role \"app\" does not exist"
        );
        assert_eq!(e.reason(), "DRIVER_USER_NOT_FOUND");
        assert!(!e.is_transient());
    }

    #[test]
    fn only_network_time_and_availability_failures_are_transient() {
        use DriverErrorKind::*;
        let transient = [Unreachable, Timeout, ServerUnavailable, PersistFailed];
        let permanent = [
            AdminLoginRejected,
            LoginRejected,
            UserNotFound,
            PermissionDenied,
            PasswordRejected,
            LimitReached,
            Tls,
            InvalidInput,
            Server,
        ];
        assert!(transient.iter().all(|k| k.is_transient()));
        assert!(permanent.iter().all(|k| !k.is_transient()));
        let mut reasons: Vec<_> = transient
            .iter()
            .chain(&permanent)
            .map(|k| k.reason())
            .collect();
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), 13, "reasons are distinct");
    }
}
