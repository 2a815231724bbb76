//! Local drivers: what rotator does on a target system to set, check and revoke a credential.
//!
//! A driver is one file: its [`Descriptor`] (app, default port, rotation types, credential
//! shape, span name, connection options, build function) and its [`Driver`] (rotator chooses the
//! secret) or [`Issuer`] (the provider issues it) implementation. Registering it is one line in
//! [`DRIVERS`]. The dispatch finds a rotation's driver by type and wraps every call in the
//! contract's preamble (phase span, target checks); the contract itself is
//! `docs/specs/driver.md`, and `rotator-testkit`'s `driver_conformance` checks it against real
//! servers.
//!
//! - [`postgres`]: `ALTER ROLE … PASSWORD '<SCRAM-SHA-256 verifier>'`.
//! - [`mysql`]: `ALTER USER '<user>'@'<host>' IDENTIFIED BY '<literal>'` (MySQL, MariaDB).
//! - [`redis`]: one ACL user per slot, `ACL SETUSER … #<sha256>`, then `ACL SAVE`.
//! - [`mongodb`]: `updateUser` with `mechanisms: ["SCRAM-SHA-256"]` on the connection's
//!   database; verify is a SCRAM-SHA-256 login and `ping`.
//! - [`aws_iam`]: IAM access keys (issued): `CreateAccessKey`, `GetCallerIdentity` with the new
//!   key, `DeleteAccessKey` of exactly the replaced id.
//! - [`okta_client_secret`]: Okta app client secrets (create, deactivate + delete; token check).
//! - [`databricks_sp_secret`]: Databricks service principal OAuth secrets (M2M admin token).
//! - [`azure_client_secret`]: Microsoft Graph `addPassword` / `removePassword` (issued).
//! - [`auth0_client_secret`]: Auth0 Management API `PATCH client_secret` (chosen, single-phase).
//! - [`unix_local_account`]: a Unix/Linux account over SSH (pinned host key): `chpasswd` with
//!   the line on stdin (login-as-root, optionally through sudo) or `passwd` over a PTY
//!   (login-as-target); single-phase.
//! - [`windows_local_account`]: SAMR `SetUserInfo2` level 23 with Samba's `rpcclient` over SMB3,
//!   the password kept off argv (0600 `-A` file, command on stdin); verify by SMB session setup.
//! - [`ldap_password`]: a directory account's password (single-phase): Active Directory
//!   `unicodePwd`, OpenLDAP RFC 3062 Password Modify, over LDAPS or StartTLS.
//! - `contract`: the traits and the descriptor; `dispatch`: lookup, build, preamble.
//! - [`error`]: [`DriverError`], [`DriverErrorKind`]; `redact`: scrubbing peer text.
//! - [`password`]: password requirements and the generator of chosen secrets.
//! - `tls`: the TLS the database drivers set up themselves (mode, `ca_file` pinning,
//!   handshake).
//! - [`quote`], [`scram`], `admin_sessions`, `shared`: helpers some drivers share;
//!   `http`: the HTTP client, base URL, sending, status and token-error classes, token cache
//!   and propagation wait of the HTTP API drivers.

mod admin_sessions;
mod contract;
mod dispatch;
pub mod error;
mod http;
pub mod password;
pub mod quote;
mod redact;
pub mod scram;
mod shared;
mod sql_error;
mod tls;

use std::time::Duration;

pub use self::contract::{
    BuildContext, Built, Descriptor, Driver, DynDriver, DynIssuer, Issuer, Operations,
};
pub(crate) use self::dispatch::invalid;
pub use self::dispatch::{
    AnyDriver, AnyIssuer, BuildError, DriverOptions, LocalDriver, RotationDriver, build, for_app,
    for_type,
};
pub use self::error::{DbSystem, DriverError, DriverErrorKind, Phase};
pub use self::shared::ConnectionShared;
pub use crate::config::registry::{TlsConfig, TlsMode};
pub use crate::rotation::Credential;
use crate::secret::SecretString;

/// Declares each driver's module and registers its `DESCRIPTOR` in [`DRIVERS`].
macro_rules! register {
    ($($driver:ident),* $(,)?) => {
        $(pub mod $driver;)*

        /// Every local driver, in registration order.
        pub static DRIVERS: &[&Descriptor] = &[$(&$driver::DESCRIPTOR),*];
    };
}

// Adding a driver: its file in this folder, and its name here.
register!(
    postgres,
    mysql,
    redis,
    aws_iam,
    okta_client_secret,
    databricks_sp_secret,
    azure_client_secret,
    auth0_client_secret,
    mongodb,
    unix_local_account,
    windows_local_account,
    ldap_password,
);

/// How long a driver waits for a connection (TCP, TLS and login), as upstream.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a driver waits for one statement or command once connected.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

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
