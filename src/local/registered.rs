//! [`Registered`]: one consistent set of what the local backend serves (the registry, its key
//! ring and a built driver per rotation), swapped whole on reload.

use std::collections::HashMap;

use uuid::Uuid;

use super::crypto::KeyRing;
use super::error::LocalError;
use super::registry::{LocalRotation, Registry};
use crate::drivers::admin_sessions::AdminSessions;
use crate::drivers::mysql::MysqlOptions;
use crate::drivers::{AnyDriver, DriverOptions, RotationDriver};

/// The registry, its key ring and the drivers built from it.
#[derive(Debug)]
pub struct Registered {
    /// The connections and rotations declared in the configuration.
    pub registry: Registry,
    /// The keys that seal stored credentials.
    pub keys: KeyRing,
    /// One driver per rotation id.
    pub drivers: HashMap<Uuid, RotationDriver>,
}

// === impl Registered ===

impl Registered {
    /// Builds the driver of every rotation in `registry`.
    ///
    /// # Errors
    ///
    /// A rotation whose driver cannot be built, or no key ring although rotations exist.
    pub fn build(registry: Registry) -> Result<Self, LocalError> {
        let keys = registry
            .keys
            .clone()
            .ok_or(LocalError::Crypto(super::crypto::CryptoError::NoKey))?;
        let mut drivers = HashMap::new();
        // One admin session cache per connection, shared by its rotations.
        let mut sessions = HashMap::new();
        for rotation in &registry.rotations {
            let connection =
                registry
                    .connections
                    .get(&rotation.connection)
                    .ok_or(LocalError::Build(crate::drivers::BuildError::Unsupported(
                        "missing connection",
                    )))?;
            let mut mysql = MysqlOptions::default();
            if let Some(host) = &connection.mysql_host_part {
                mysql.host_part.clone_from(host);
            }
            let driver = AnyDriver::build(
                &rotation.id.to_string(),
                connection.config.clone(),
                &rotation.parameters,
                DriverOptions {
                    mysql,
                    redis_usernames: None,
                    postgres_admin_sessions: Some(
                        sessions
                            .entry(rotation.connection.clone())
                            .or_insert_with(|| {
                                AdminSessions::new(connection.max_parallel_rotations)
                            })
                            .clone(),
                    ),
                },
            )
            .map_err(LocalError::Build)?;
            drivers.insert(rotation.id, driver);
        }
        Ok(Self {
            registry,
            keys,
            drivers,
        })
    }

    /// The rotation `id` and its driver.
    ///
    /// # Errors
    ///
    /// [`LocalError::NoCredential`] when `id` is not registered.
    pub fn rotation(&self, id: Uuid) -> Result<(&LocalRotation, &RotationDriver), LocalError> {
        let missing = || LocalError::NoCredential(id.to_string());
        let rotation = self.registry.rotation(id).ok_or_else(missing)?;
        let driver = self.drivers.get(&id).ok_or_else(missing)?;
        Ok((rotation, driver))
    }
}
