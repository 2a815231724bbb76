//! The driver contract (`docs/specs/driver.md`) as traits, and the descriptor every driver file
//! exports.
//!
//! A driver implements [`Driver`] when rotator chooses the secret (it generates a password and
//! the driver sets it), or [`Issuer`] when the provider creates the secret and shows it once.
//! Its [`Descriptor`] says what it is before anything is built: the app it serves, its default
//! port, its rotation types and credential shape, its name in spans, its connection options, and
//! how to build it for one rotation.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use super::ConnectionConfig;
use super::error::{DbSystem, DriverError};
use super::shared::ConnectionShared;
use crate::proto::{PasswordRequirements, RotationType, rotation_parameters};
use crate::rotation::{Credential, CredentialShape, SecretSource};
use crate::secret::SecretString;

/// A driver for secrets rotator chooses: sets, checks and revokes one user's password.
///
/// The dispatch ([`AnyDriver`](super::AnyDriver)) runs each call in its phase span and refuses,
/// before the driver is called, a user that is not one of the rotation's two or that is the
/// admin, and an empty password. Each call opens its own connection (or takes an idle admin
/// session) and calls share no state, so they may run in parallel.
pub trait Driver: Send + Sync + fmt::Debug + 'static {
    /// Makes `credential.secret` the password of `credential.id` on the target.
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

    /// [`Driver::apply`] for a driver that logs in as the target to change its own password
    /// (`login-as-target`, `target-principal`): `current` holds the passwords the target may
    /// hold now, most likely first (the slot's stored credential, then the rotation's configured
    /// `temporary_parameters.password`). The engine calls this for single-phase types.
    ///
    /// Such a driver logs in with each of `current` and then with `credential.secret`: an
    /// interrupted earlier apply may already have set it, and then there is nothing to change.
    /// The default ignores `current`: drivers that change passwords as an admin need none.
    ///
    /// # Errors
    ///
    /// As [`Driver::apply`]; `LoginRejected` when none of the passwords logs in.
    fn apply_with_current(
        &self,
        credential: &Credential,
        current: &[SecretString],
    ) -> impl Future<Output = Result<(), DriverError>> + Send {
        let _ = current;
        self.apply(credential)
    }

    /// Logs in as `credential` on a new connection, as an application would.
    ///
    /// # Errors
    ///
    /// [`DriverErrorKind::LoginRejected`](super::DriverErrorKind::LoginRejected) when the
    /// target refuses the credential; other kinds when the check itself could not be made.
    fn verify(
        &self,
        credential: &Credential,
    ) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// Makes every password of user `id` unusable. Idempotent.
    ///
    /// # Errors
    ///
    /// A [`DriverError`], classified as for apply.
    fn revoke(&self, id: &str) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// Logs in as the admin and changes nothing: the readiness check built with the driver.
    ///
    /// # Errors
    ///
    /// As [`Driver::verify`], with `AdminLoginRejected` for bad admin credentials.
    fn probe(&self) -> impl Future<Output = Result<(), DriverError>> + Send;
}

/// A driver for secrets the provider issues: AWS access keys, Azure, Okta and Databricks client
/// secrets. The provider creates the secret, shows it once and names it with an id.
///
/// The engine seals what [`Issuer::issue`] returns before it does anything else, and keeps the
/// ids the provider held before the attempt, so a secret created but never recorded (a crash
/// between the provider's answer and the store's write) is found by [`Issuer::list`] and
/// revoked. Secrets the store never knew and that existed before the attempt are reported,
/// never deleted.
pub trait Issuer: Send + Sync + fmt::Debug + 'static {
    /// Asks the provider for a new secret of the rotation's principal: its id and value.
    ///
    /// # Errors
    ///
    /// [`DriverErrorKind::LimitReached`](super::DriverErrorKind::LimitReached) when the provider
    /// holds as many secrets as it allows (the engine then revokes the slot's replaced secret
    /// first and asks again); other kinds as for [`Driver::apply`].
    fn issue(&self) -> impl Future<Output = Result<Credential, DriverError>> + Send;

    /// Proves the credential works (a token request, `GetCallerIdentity`).
    ///
    /// # Errors
    ///
    /// `LoginRejected` when the provider refuses it.
    fn verify(
        &self,
        credential: &Credential,
    ) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// Deletes the provider's secret `id`. Idempotent: an unknown id is success.
    ///
    /// # Errors
    ///
    /// A [`DriverError`].
    fn revoke(&self, id: &str) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// The ids of every secret the principal holds now.
    ///
    /// # Errors
    ///
    /// A [`DriverError`].
    fn list(&self) -> impl Future<Output = Result<Vec<String>, DriverError>> + Send;
}

/// What a driver is, before any connection is built: the one value a driver file exports, and
/// the one line (`&your_driver::DESCRIPTOR`) that registers it in [`DRIVERS`](super::DRIVERS).
#[derive(Debug)]
pub struct Descriptor {
    /// The connection `app` it serves, as Infisical names it (`postgres`, `mysql`, `redis`).
    pub app: &'static str,
    /// The port when a connection names none.
    pub default_port: u16,
    /// The rotation types it rotates.
    pub rotation_types: &'static [RotationType],
    /// The fields of its generated credential.
    pub shape: CredentialShape,
    /// Who chooses the secret: rotator ([`Driver`]) or the provider ([`Issuer`]).
    pub source: SecretSource,
    /// `db.system` (or the peer's name) in spans and errors.
    pub system: DbSystem,
    /// `db.operation` of each phase's span.
    pub operations: Operations,
    /// The connection keys it reads beyond the common ones (`host`, `port`, `database`,
    /// `username`, `password`, `tls`, `ca_file`, `max_parallel_rotations`); any other key is
    /// refused.
    pub options: &'static [&'static str],
    /// Builds the driver of one rotation. Sends nothing.
    pub build: fn(&BuildContext<'_>) -> Result<Built, DriverError>,
}

/// `db.operation` of each phase.
#[derive(Debug, Clone, Copy)]
pub struct Operations {
    /// Apply (chosen) or issue (issued).
    pub apply: &'static str,
    /// Verify.
    pub verify: &'static str,
    /// Revoke.
    pub revoke: &'static str,
    /// Probe (chosen) or list (issued).
    pub probe: &'static str,
}

/// What a driver's `build` gets.
#[derive(Debug)]
pub struct BuildContext<'a> {
    /// The rotation's id (Redis names its slot users after it).
    pub rotation_id: &'a str,
    /// The target, its port resolved.
    pub connection: &'a Arc<ConnectionConfig>,
    /// The connection's driver options (keys already checked against
    /// [`Descriptor::options`]).
    pub options: &'a toml::Table,
    /// The rotation's typed parameters (already checked to be of one of the driver's types).
    pub parameters: &'a rotation_parameters::Kind,
    /// The slot users, for drivers whose parameters do not name them (Redis); the driver's
    /// own naming when absent.
    pub usernames: Option<&'a [String; 2]>,
    /// State shared by the rotations of one connection (idle admin sessions).
    pub shared: &'a ConnectionShared,
    /// Days between rotations (`rotation_interval_days`), when the registry declares the
    /// rotation: issued secrets with a lifetime (Azure) expire after a multiple of it, and a
    /// provider's limit on that lifetime is checked at build, before any secret exists.
    pub interval_days: Option<u32>,
}

/// A driver built for one rotation.
#[derive(Debug)]
pub enum Built {
    /// A chosen-secret driver, its two slot users, and the rotation's password requirements.
    Chosen {
        /// The driver.
        driver: Box<dyn DynDriver>,
        /// The user of slot 0 and of slot 1.
        usernames: [String; 2],
        /// `passwordRequirements` of the parameters, when the type has them.
        requirements: Option<PasswordRequirements>,
    },
    /// An issued-secret driver.
    Issued(Box<dyn DynIssuer>),
}

/// A boxed future of a driver call.
pub type DriverFuture<'a, T> =
    std::pin::Pin<Box<dyn Future<Output = Result<T, DriverError>> + Send + 'a>>;

/// [`Driver`] as a trait object, for the dispatch. Implemented for every [`Driver`].
pub trait DynDriver: Send + Sync + fmt::Debug {
    /// [`Driver::apply`].
    fn apply<'a>(&'a self, credential: &'a Credential) -> DriverFuture<'a, ()>;
    /// [`Driver::apply_with_current`].
    fn apply_with_current<'a>(
        &'a self,
        credential: &'a Credential,
        current: &'a [SecretString],
    ) -> DriverFuture<'a, ()>;
    /// [`Driver::verify`].
    fn verify<'a>(&'a self, credential: &'a Credential) -> DriverFuture<'a, ()>;
    /// [`Driver::revoke`].
    fn revoke<'a>(&'a self, id: &'a str) -> DriverFuture<'a, ()>;
    /// [`Driver::probe`].
    fn probe(&self) -> DriverFuture<'_, ()>;
}

/// [`Issuer`] as a trait object, for the dispatch. Implemented for every [`Issuer`].
pub trait DynIssuer: Send + Sync + fmt::Debug {
    /// [`Issuer::issue`].
    fn issue(&self) -> DriverFuture<'_, Credential>;
    /// [`Issuer::verify`].
    fn verify<'a>(&'a self, credential: &'a Credential) -> DriverFuture<'a, ()>;
    /// [`Issuer::revoke`].
    fn revoke<'a>(&'a self, id: &'a str) -> DriverFuture<'a, ()>;
    /// [`Issuer::list`].
    fn list(&self) -> DriverFuture<'_, Vec<String>>;
}

impl<T: Driver> DynDriver for T {
    fn apply<'a>(&'a self, credential: &'a Credential) -> DriverFuture<'a, ()> {
        Box::pin(Driver::apply(self, credential))
    }

    fn apply_with_current<'a>(
        &'a self,
        credential: &'a Credential,
        current: &'a [SecretString],
    ) -> DriverFuture<'a, ()> {
        Box::pin(Driver::apply_with_current(self, credential, current))
    }

    fn verify<'a>(&'a self, credential: &'a Credential) -> DriverFuture<'a, ()> {
        Box::pin(Driver::verify(self, credential))
    }

    fn revoke<'a>(&'a self, id: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(Driver::revoke(self, id))
    }

    fn probe(&self) -> DriverFuture<'_, ()> {
        Box::pin(Driver::probe(self))
    }
}

impl<T: Issuer> DynIssuer for T {
    fn issue(&self) -> DriverFuture<'_, Credential> {
        Box::pin(Issuer::issue(self))
    }

    fn verify<'a>(&'a self, credential: &'a Credential) -> DriverFuture<'a, ()> {
        Box::pin(Issuer::verify(self, credential))
    }

    fn revoke<'a>(&'a self, id: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(Issuer::revoke(self, id))
    }

    fn list(&self) -> DriverFuture<'_, Vec<String>> {
        Box::pin(Issuer::list(self))
    }
}

// === impl Built ===

impl Built {
    /// A chosen-secret driver with its slot users and password requirements.
    pub fn chosen(
        driver: impl Driver,
        usernames: [String; 2],
        requirements: Option<&PasswordRequirements>,
    ) -> Self {
        Self::Chosen {
            driver: Box::new(driver),
            usernames,
            requirements: requirements.cloned(),
        }
    }

    /// An issued-secret driver.
    pub fn issued(issuer: impl Issuer) -> Self {
        Self::Issued(Box::new(issuer))
    }
}

// === impl BuildContext ===

impl BuildContext<'_> {
    /// The error for parameters of a type the driver does not rotate (the dispatch checks
    /// this first, so a driver meets it only through a registration mistake).
    pub fn wrong_parameters(&self, system: DbSystem) -> DriverError {
        super::invalid(
            system,
            super::Phase::Build,
            "the rotation's parameters are not of this driver's type",
        )
    }
}
