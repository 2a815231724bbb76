//! The dispatch: finds a rotation's driver by its type, builds it, and wraps it in the contract
//! preamble every driver would otherwise repeat: each call in its phase span with the database
//! attributes, the target user checked (one of the rotation's two, never the admin), an empty
//! secret refused, failures recorded on the span.

use std::future::Future;
use std::sync::Arc;

use tracing::Instrument as _;

use super::contract::{BuildContext, Built, Descriptor, DynDriver, DynIssuer};
use super::error::{DbSystem, DriverError, DriverErrorKind, Phase};
use super::password::{PasswordError, PasswordPolicy};
use super::shared::ConnectionShared;
use super::{ConnectionConfig, DRIVERS, Driver, Slot};
use crate::config::registry::TargetSpec;
use crate::proto::{RotationType, rotation_parameters};
use crate::rotation::{Credential, SecretSource};
use crate::secret::SecretString;

/// Why no driver could be built for a rotation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// No local driver exists for this type.
    #[error("no local driver for rotation type {0}")]
    Unsupported(&'static str),
    /// The connection or parameters are unusable.
    #[error(transparent)]
    Invalid(#[from] DriverError),
    /// The password requirements are invalid.
    #[error(transparent)]
    Password(#[from] PasswordError),
}

/// Settings of one build that are not the rotation's parameters.
#[derive(Debug, Clone, Default)]
pub struct DriverOptions {
    /// The connection's driver options (e.g. MySQL's `mysql_host_part`).
    pub options: toml::Table,
    /// Slot users for drivers whose parameters do not name them (Redis); the driver's naming
    /// when absent.
    pub usernames: Option<[String; 2]>,
    /// State shared with the connection's other rotations; a fresh one when absent.
    pub shared: Option<ConnectionShared>,
    /// Days between the rotation's rotations, for drivers whose secrets expire (Azure): absent
    /// when the driver is built outside a registry (tests), which then uses its default.
    pub interval_days: Option<u32>,
}

/// A chosen-secret driver behind the contract preamble.
#[derive(Debug, Clone)]
pub struct AnyDriver {
    inner: Arc<dyn DynDriver>,
    descriptor: &'static Descriptor,
    connection: Arc<ConnectionConfig>,
    usernames: Arc<[String; 2]>,
}

/// A chosen-secret driver together with the password policy of its rotation.
#[derive(Debug, Clone)]
pub struct RotationDriver {
    /// The driver.
    pub driver: AnyDriver,
    /// The validated password policy for new credentials.
    pub password_policy: PasswordPolicy,
}

/// An issued-secret driver behind the contract preamble (phase spans, recorded failures).
#[derive(Debug, Clone)]
pub struct AnyIssuer {
    inner: Arc<dyn DynIssuer>,
    descriptor: &'static Descriptor,
    connection: Arc<ConnectionConfig>,
}

/// The driver of one local rotation, by who chooses its secret.
#[derive(Debug, Clone)]
pub enum LocalDriver {
    /// rotator generates the password; the driver sets it.
    Chosen(RotationDriver),
    /// The provider issues the secret.
    Issued(AnyIssuer),
}

/// The registered driver of `app`, e.g. `postgres`.
pub fn for_app(app: &str) -> Option<&'static Descriptor> {
    DRIVERS.iter().copied().find(|d| d.app == app)
}

/// The registered driver of `rotation_type`.
pub fn for_type(rotation_type: RotationType) -> Option<&'static Descriptor> {
    DRIVERS
        .iter()
        .copied()
        .find(|d| d.rotation_types.contains(&rotation_type))
}

/// Builds the driver of a rotation from its connection, parameters and options, and validates
/// its password requirements. Sends nothing.
///
/// # Errors
///
/// [`BuildError::Unsupported`] for types without a local driver; otherwise invalid connection
/// fields, unknown options, parameters or password requirements.
pub fn build(
    rotation_id: &str,
    connection: impl Into<Arc<ConnectionConfig>>,
    parameters: &rotation_parameters::Kind,
    options: DriverOptions,
) -> Result<LocalDriver, BuildError> {
    let connection: Arc<ConnectionConfig> = connection.into();
    let rotation_type = crate::rotation::json::type_of_parameters(parameters);
    let Some(descriptor) = for_type(rotation_type) else {
        return Err(BuildError::Unsupported(
            rotation_type.slug().unwrap_or("unspecified"),
        ));
    };
    let system = descriptor.system;
    connection.check(system)?;
    if let Some(key) = options
        .options
        .keys()
        .find(|key| !descriptor.options.contains(&key.as_str()))
    {
        return Err(invalid(
            system,
            Phase::Build,
            format!(
                "unknown connection option {key:?} for app {}",
                descriptor.app
            ),
        )
        .into());
    }
    let shared = options.shared.unwrap_or_default();
    let built = (descriptor.build)(&BuildContext {
        rotation_id,
        connection: &connection,
        options: &options.options,
        parameters,
        usernames: options.usernames.as_ref(),
        shared: &shared,
        interval_days: options.interval_days,
    })?;
    match (built, descriptor.source) {
        (
            Built::Chosen {
                driver,
                usernames,
                requirements,
            },
            SecretSource::Chosen,
        ) => {
            let dual_phase = rotation_type.info().is_some_and(|t| t.dual_phase);
            check_usernames(system, &usernames, &connection.admin_username, dual_phase)?;
            let password_policy = PasswordPolicy::for_type(rotation_type, requirements.as_ref())?;
            Ok(LocalDriver::Chosen(RotationDriver {
                driver: AnyDriver {
                    inner: Arc::from(driver),
                    descriptor,
                    connection,
                    usernames: Arc::new(usernames),
                },
                password_policy,
            }))
        }
        (Built::Issued(issuer), SecretSource::Issued) => Ok(LocalDriver::Issued(AnyIssuer {
            inner: Arc::from(issuer),
            descriptor,
            connection,
        })),
        _ => Err(invalid(
            system,
            Phase::Build,
            "the driver built a different kind than its descriptor declares",
        )
        .into()),
    }
}

// === impl AnyDriver ===

impl AnyDriver {
    /// Builds the chosen-secret driver of a rotation (see [`build`]).
    ///
    /// # Errors
    ///
    /// As [`build`]; [`BuildError::Unsupported`] for an issued-secret type.
    pub fn build(
        rotation_id: &str,
        connection: impl Into<Arc<ConnectionConfig>>,
        parameters: &rotation_parameters::Kind,
        options: DriverOptions,
    ) -> Result<RotationDriver, BuildError> {
        match build(rotation_id, connection, parameters, options)? {
            LocalDriver::Chosen(driver) => Ok(driver),
            LocalDriver::Issued(issuer) => Err(BuildError::Unsupported(issuer.descriptor.app)),
        }
    }

    /// The user a slot's credential belongs to.
    pub fn username_for(&self, slot: Slot) -> &str {
        &self.usernames[slot.index()]
    }

    /// The target system.
    pub fn system(&self) -> DbSystem {
        self.descriptor.system
    }

    /// The driver's descriptor.
    pub fn descriptor(&self) -> &'static Descriptor {
        self.descriptor
    }

    /// Runs `apply` in the apply span once the target user and the password are checked.
    async fn apply_checked<'a, F>(
        &'a self,
        credential: &'a Credential,
        apply: impl FnOnce() -> F,
    ) -> Result<(), DriverError>
    where
        F: Future<Output = Result<(), DriverError>> + 'a,
    {
        let user = credential.id.as_str();
        self.span(
            Phase::Apply,
            self.descriptor.operations.apply,
            user,
            async {
                self.check_target(Phase::Apply, user)?;
                if credential.secret.is_empty() {
                    return Err(invalid(
                        self.system(),
                        Phase::Apply,
                        "the password is empty",
                    ));
                }
                apply().await
            },
        )
        .await
    }

    fn check_target(&self, phase: Phase, username: &str) -> Result<(), DriverError> {
        check_target(
            self.system(),
            phase,
            username,
            &self.usernames,
            &self.connection.admin_username,
        )
    }

    fn span<'a, T: 'a>(
        &'a self,
        phase: Phase,
        operation: &'static str,
        user: &'a str,
        work: impl Future<Output = Result<T, DriverError>> + 'a,
    ) -> impl Future<Output = Result<T, DriverError>> + 'a {
        in_phase_span(
            self.system(),
            phase,
            operation,
            &self.connection,
            user,
            work,
        )
    }
}

impl Driver for AnyDriver {
    async fn apply(&self, credential: &Credential) -> Result<(), DriverError> {
        self.apply_checked(credential, || self.inner.apply(credential))
            .await
    }

    async fn apply_with_current(
        &self,
        credential: &Credential,
        current: &[SecretString],
    ) -> Result<(), DriverError> {
        self.apply_checked(credential, || {
            self.inner.apply_with_current(credential, current)
        })
        .await
    }

    async fn verify(&self, credential: &Credential) -> Result<(), DriverError> {
        let user = credential.id.as_str();
        self.span(
            Phase::Verify,
            self.descriptor.operations.verify,
            user,
            async {
                if credential.secret.is_empty() {
                    return Err(invalid(
                        self.system(),
                        Phase::Verify,
                        "the password is empty",
                    ));
                }
                self.inner.verify(credential).await
            },
        )
        .await
    }

    async fn revoke(&self, id: &str) -> Result<(), DriverError> {
        self.span(
            Phase::Revoke,
            self.descriptor.operations.revoke,
            id,
            async {
                self.check_target(Phase::Revoke, id)?;
                self.inner.revoke(id).await
            },
        )
        .await
    }

    async fn probe(&self) -> Result<(), DriverError> {
        let admin = self.connection.admin_username.as_str();
        self.span(
            Phase::Probe,
            self.descriptor.operations.probe,
            admin,
            self.inner.probe(),
        )
        .await
    }
}

// === impl AnyIssuer ===

impl AnyIssuer {
    /// An issued-secret driver behind the preamble, without the catalogue: for engine tests
    /// with a fake provider (production drivers are built by [`build`]).
    pub fn new(
        issuer: impl super::Issuer,
        descriptor: &'static Descriptor,
        connection: ConnectionConfig,
    ) -> Self {
        Self {
            inner: Arc::new(issuer),
            descriptor,
            connection: Arc::new(connection),
        }
    }

    /// The target system.
    pub fn system(&self) -> DbSystem {
        self.descriptor.system
    }

    /// Asks the provider for a new secret (see [`Issuer::issue`](super::Issuer::issue)).
    ///
    /// # Errors
    ///
    /// A [`DriverError`].
    pub async fn issue(&self) -> Result<Credential, DriverError> {
        let principal = self.connection.admin_username.as_str();
        let issued = in_phase_span(
            self.system(),
            Phase::Issue,
            self.descriptor.operations.apply,
            &self.connection,
            principal,
            self.inner.issue(),
        )
        .await?;
        if issued.id.is_empty() || issued.secret.is_empty() {
            return Err(DriverError::new(
                DriverErrorKind::Server,
                self.system(),
                Phase::Issue,
                "the provider answered without a secret id or value",
            ));
        }
        Ok(issued)
    }

    /// Proves the credential works.
    ///
    /// # Errors
    ///
    /// A [`DriverError`].
    pub async fn verify(&self, credential: &Credential) -> Result<(), DriverError> {
        in_phase_span(
            self.system(),
            Phase::Verify,
            self.descriptor.operations.verify,
            &self.connection,
            &credential.id,
            self.inner.verify(credential),
        )
        .await
    }

    /// Deletes the provider's secret `id`; an unknown id is success.
    ///
    /// # Errors
    ///
    /// A [`DriverError`].
    pub async fn revoke(&self, id: &str) -> Result<(), DriverError> {
        in_phase_span(
            self.system(),
            Phase::Revoke,
            self.descriptor.operations.revoke,
            &self.connection,
            id,
            self.inner.revoke(id),
        )
        .await
    }

    /// The ids of every secret the principal holds now.
    ///
    /// # Errors
    ///
    /// A [`DriverError`].
    pub async fn list(&self) -> Result<Vec<String>, DriverError> {
        in_phase_span(
            self.system(),
            Phase::List,
            self.descriptor.operations.probe,
            &self.connection,
            &self.connection.admin_username,
            self.inner.list(),
        )
        .await
    }
}

// === impl LocalDriver ===

impl LocalDriver {
    /// The target system.
    pub fn system(&self) -> DbSystem {
        match self {
            Self::Chosen(d) => d.driver.system(),
            Self::Issued(i) => i.system(),
        }
    }
}

// === impl ConnectionConfig ===

impl ConnectionConfig {
    /// The target of a declared connection; its port is the driver's default when absent.
    pub fn from_spec(spec: &TargetSpec, default_port: u16) -> Self {
        Self {
            host: spec.host.clone(),
            port: spec.port.unwrap_or(default_port),
            database: spec.database.clone(),
            admin_username: spec.admin_username.clone(),
            admin_password: spec.admin_password.clone(),
            tls: spec.tls.clone(),
        }
    }

    /// The CA PEM, if one is set and not empty.
    pub(crate) fn ca_pem(&self) -> Option<&str> {
        self.tls.ca_pem.as_deref().filter(|p| !p.trim().is_empty())
    }

    /// Checks the fields every driver needs.
    pub(crate) fn check(&self, system: DbSystem) -> Result<(), DriverError> {
        let problem = if self.host.trim().is_empty() {
            Some("the connection host is empty")
        } else if self.port == 0 {
            Some("the connection port is 0")
        } else if self.admin_username.trim().is_empty() {
            Some("the connection admin username is empty")
        } else {
            None
        };
        match problem {
            Some(p) => Err(invalid(system, Phase::Build, p)),
            None => Ok(()),
        }
    }
}

// === helpers shared by the drivers ===

/// An [`DriverErrorKind::InvalidInput`] error with a driver-written (secret-free) message.
pub(crate) fn invalid(system: DbSystem, phase: Phase, message: impl Into<String>) -> DriverError {
    DriverError::new(DriverErrorKind::InvalidInput, system, phase, message)
}

/// Checks a username a caller asks a driver to change: one of the rotation's two users, never
/// the admin.
fn check_target(
    system: DbSystem,
    phase: Phase,
    username: &str,
    usernames: &[String; 2],
    admin: &str,
) -> Result<(), DriverError> {
    if username == admin {
        return Err(invalid(
            system,
            phase,
            format!("refusing to change the connection's own admin user {username:?}"),
        ));
    }
    if !usernames.iter().any(|u| u == username) {
        return Err(invalid(
            system,
            phase,
            format!("user {username:?} is not one of this rotation's two users"),
        ));
    }
    Ok(())
}

/// Checks the two slot usernames of a rotation. A single-phase type has one principal, named
/// for both slots.
fn check_usernames(
    system: DbSystem,
    usernames: &[String; 2],
    admin: &str,
    dual_phase: bool,
) -> Result<(), DriverError> {
    let [a, b] = usernames;
    let problem = if a.is_empty() {
        Some("Username1 Required".to_owned())
    } else if b.is_empty() {
        Some("Username2 Required".to_owned())
    } else if dual_phase && a == b {
        Some("the two usernames must differ: the second slot is what keeps the previous credential alive".to_owned())
    } else if a == admin || b == admin {
        Some(format!(
            "the connection's admin user {admin:?} cannot be a rotated user"
        ))
    } else {
        None
    };
    match problem {
        Some(p) => Err(invalid(system, Phase::Build, p)),
        None => Ok(()),
    }
}

/// Runs one phase inside its span, recording `error.type` on failure.
///
/// The span carries the OpenTelemetry database attributes: `db.system`, `db.operation`,
/// `db.namespace`, `db.user`, `server.address`, `server.port`.
async fn in_phase_span<T>(
    system: DbSystem,
    phase: Phase,
    operation: &'static str,
    connection: &ConnectionConfig,
    user: &str,
    work: impl Future<Output = Result<T, DriverError>>,
) -> Result<T, DriverError> {
    macro_rules! phase_span {
        ($name:literal) => {
            tracing::info_span!(
                $name,
                otel.kind = "client",
                db.system = system.as_str(),
                db.operation = operation,
                db.namespace = connection.database.as_str(),
                db.user = user,
                server.address = connection.host.as_str(),
                server.port = connection.port,
                error.type = tracing::field::Empty,
            )
        };
    }
    let span = match phase {
        Phase::Apply => phase_span!("driver.apply"),
        Phase::Verify => phase_span!("driver.verify"),
        Phase::Revoke => phase_span!("driver.revoke"),
        Phase::Probe => phase_span!("driver.probe"),
        Phase::Issue => phase_span!("driver.issue"),
        Phase::List => phase_span!("driver.list"),
        Phase::Build => phase_span!("driver.build"),
    };
    let result = work.instrument(span.clone()).await;
    if let Err(e) = &result {
        // Status error, `error.type` and a redacted `exception` event.
        crate::telemetry::record_error(&span, e.reason(), &e.to_string());
        tracing::debug!(parent: &span, error = %e, "driver phase failed");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rotation::{CredentialShape, TYPES};

    #[test]
    fn every_registered_driver_agrees_with_the_spec_and_is_unique() {
        let mut apps = std::collections::HashSet::new();
        let mut types = std::collections::HashSet::new();
        for d in DRIVERS {
            assert!(apps.insert(d.app), "app {} registered twice", d.app);
            assert!(d.default_port != 0, "{}", d.app);
            for t in d.rotation_types {
                assert!(types.insert(*t), "{t:?} has two drivers");
                assert_eq!(CredentialShape::of(*t), Some(d.shape), "{t:?} shape");
                assert_eq!(SecretSource::of(*t), Some(d.source), "{t:?} source");
                let info = TYPES.iter().find(|i| i.rotation_type == *t);
                assert_eq!(info.map(|i| i.app), Some(d.app), "{t:?} app");
            }
        }
    }

    #[test]
    fn a_type_without_a_driver_is_unsupported_not_mislabelled() {
        let parameters = rotation_parameters::Kind::MssqlCredentials(
            crate::proto::SqlCredentialsParameters::default(),
        );
        let connection = ConnectionConfig {
            host: "127.0.0.1".into(),
            port: 389,
            database: String::new(),
            admin_username: "cn=admin".into(),
            admin_password: crate::secret::SecretString::new("x"),
            tls: Default::default(),
        };
        assert!(matches!(
            build("id", connection, &parameters, DriverOptions::default()),
            Err(BuildError::Unsupported("mssql-credentials"))
        ));
    }
}
