//! [`Registered`]: one consistent set of what the local backend serves (the registry, its key
//! ring and a built driver per rotation), swapped whole on reload.
//!
//! Building it is where the configuration meets the drivers: each connection's `app` must name
//! a registered driver and its extra keys must be that driver's options; each rotation's type
//! must be one its connection's driver rotates. Every problem is reported at once, by config key.

use std::collections::HashMap;
use std::sync::Arc;

use uuid::Uuid;

use super::error::LocalError;
use crate::config::ConfigProblem;
use crate::config::registry::{LocalConnection, LocalRotation, Registry};
use crate::crypto::{CryptoError, KeyRing};
use crate::drivers::{ConnectionConfig, ConnectionShared, Descriptor, DriverOptions, LocalDriver};

/// The registry, its key ring and the drivers built from it.
#[derive(Debug)]
pub struct Registered {
    /// The connections and rotations declared in the configuration.
    pub registry: Registry,
    /// The keys that seal stored credentials.
    pub keys: KeyRing,
    /// The driver of each rotation, in the registry's order (`drivers[i]` is the driver of
    /// `registry.rotations[i]`): a vector, not a map by id, which with 10,000 rotations held
    /// ~0.9 MB more (16,384 buckets of id and driver).
    drivers: Vec<Option<LocalDriver>>,
}

// === impl Registered ===

impl Registered {
    /// Builds the driver of every rotation in `registry`. Sends nothing.
    ///
    /// # Errors
    ///
    /// [`LocalError::Misconfigured`] with every problem found, by config key; no key ring
    /// although rotations exist.
    pub fn build(registry: Registry) -> Result<Self, LocalError> {
        let keys = registry
            .keys
            .clone()
            .ok_or(LocalError::Crypto(CryptoError::NoKey))?;
        let mut problems = Vec::new();
        // Per connection: its config, driver, shared sessions and one target config that every
        // rotation's driver shares (10,000 rotations on a connection hold one copy, not 10,000).
        let mut connections: HashMap<&str, (&LocalConnection, &'static Descriptor, Shared)> =
            HashMap::new();
        for connection in registry.connections.values() {
            let Some(descriptor) = crate::drivers::for_app(&connection.app) else {
                problems.push(problem(
                    format!("{}.app", connection.key),
                    format!(
                        "no local driver for app {:?}; drivers exist for {}",
                        connection.app,
                        known_apps()
                    ),
                ));
                continue;
            };
            let unknown: Vec<&String> = connection
                .options
                .keys()
                .filter(|key| !descriptor.options.contains(&key.as_str()))
                .collect();
            for key in &unknown {
                problems.push(problem(
                    format!("{}.{key}", connection.key),
                    format!("not a key of a {} connection", descriptor.app),
                ));
            }
            if unknown.is_empty() {
                let shared = Shared {
                    sessions: ConnectionShared::new(connection.max_parallel_rotations),
                    target: Arc::new(ConnectionConfig::from_spec(
                        &connection.target,
                        descriptor.default_port,
                    )),
                };
                connections.insert(&connection.name, (connection, descriptor, shared));
            }
        }
        let mut drivers = Vec::with_capacity(registry.rotations.len());
        for rotation in &registry.rotations {
            // One slot per rotation, so the indexes match; a rotation without a driver is a
            // problem reported below or by the file, and then nothing is built.
            drivers.push(None);
            let Some((connection, descriptor, shared)) =
                connections.get(rotation.connection.as_str())
            else {
                // An unknown connection is the file's problem (reported there); a connection
                // without a driver or with unknown keys is reported above.
                continue;
            };
            if !descriptor.rotation_types.contains(&rotation.rotation_type) {
                problems.push(problem(
                    format!("{}.connection", rotation.key()),
                    format!(
                        "connection {:?} is a {} connection, which rotates {}",
                        rotation.connection,
                        descriptor.app,
                        slugs(descriptor)
                    ),
                ));
                continue;
            }
            match build_one(rotation, connection, shared) {
                Ok(driver) => {
                    if let Some(slot) = drivers.last_mut() {
                        *slot = Some(driver);
                    }
                }
                Err(reason) => problems.push(problem(rotation.key(), reason)),
            }
        }
        if !problems.is_empty() {
            problems.sort_by(|a, b| a.key.cmp(&b.key));
            return Err(LocalError::Misconfigured(problems));
        }
        Ok(Self {
            registry,
            keys,
            drivers,
        })
    }

    /// A registered set with drivers built elsewhere (engine tests with fake providers).
    #[cfg(test)]
    pub(crate) fn with_drivers(
        registry: Registry,
        keys: KeyRing,
        mut drivers: HashMap<Uuid, LocalDriver>,
    ) -> Self {
        let drivers = registry
            .rotations
            .iter()
            .map(|rotation| drivers.remove(&rotation.id))
            .collect();
        Self {
            registry,
            keys,
            drivers,
        }
    }

    /// The rotation `id` and its driver.
    ///
    /// # Errors
    ///
    /// [`LocalError::NoCredential`] when `id` is not registered.
    pub fn rotation(&self, id: Uuid) -> Result<(&LocalRotation, &LocalDriver), LocalError> {
        self.registry
            .position(id)
            .and_then(|index| {
                let rotation = self.registry.rotations.get(index)?;
                Some((rotation, self.drivers.get(index)?.as_ref()?))
            })
            .ok_or_else(|| LocalError::NoCredential(id.to_string()))
    }
}

/// What the rotations of one connection share.
struct Shared {
    sessions: ConnectionShared,
    target: Arc<ConnectionConfig>,
}

fn build_one(
    rotation: &LocalRotation,
    connection: &LocalConnection,
    shared: &Shared,
) -> Result<LocalDriver, String> {
    crate::drivers::build(
        &rotation.id.to_string(),
        Arc::clone(&shared.target),
        &rotation.parameters,
        DriverOptions {
            options: connection.options.clone(),
            usernames: None,
            shared: Some(shared.sessions.clone()),
            interval_days: Some(rotation.interval_days),
        },
    )
    .map_err(|e| e.to_string())
}

fn problem(key: String, reason: String) -> ConfigProblem {
    ConfigProblem { key, reason }
}

fn known_apps() -> String {
    crate::drivers::DRIVERS
        .iter()
        .map(|d| d.app)
        .collect::<Vec<_>>()
        .join(", ")
}

fn slugs(descriptor: &Descriptor) -> String {
    descriptor
        .rotation_types
        .iter()
        .filter_map(|t| t.slug())
        .collect::<Vec<_>>()
        .join(", ")
}
