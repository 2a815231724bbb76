//! Local rotation: the pieces rotator needs to rotate credentials itself, crash-safely, without
//! Infisical.
//!
//! - [`password`]: password requirements (validation, per-type symbol rules) and the generator.
//! - [`attempt`]: the attempt state machine as pure decisions.
//! - [`crypto`]: AES-256-GCM key ring for credentials at rest.
//! - [`schedule`]: when a rotation is next due.
//! - [`backend`]: runs attempts under leases, recovery and first create; serves reads.
//! - [`error`], [`failpoint`]: its error, and the crash test's failpoints.
//! - [`scheduler`]: the background task that rotates due rotations.
//! - [`registry`]: the connections and rotations declared in the configuration.
//! - [`registered`]: the registry with its keys and built drivers, swapped whole on reload.
//! - [`reload`]: SIGHUP re-reads the configuration file and swaps the registered set.
//! - [`limits`]: rotations at once per connection, for calls and the scheduler alike.
//! - [`view`]: a local rotation in the API's `SecretRotation` shape.

pub mod attempt;
pub mod backend;
pub mod crypto;
pub mod error;
pub mod failpoint;
pub mod limits;
pub mod password;
pub mod registered;
pub mod registry;
pub mod reload;
pub mod schedule;
pub mod scheduler;
pub mod view;

/// Builds the local backend when rotations are registered, then runs its start-up (recovery of
/// open attempts, first create) before the server answers anything.
///
/// # Errors
///
/// A rotation that cannot be built, or a store failure during start-up.
pub async fn start(
    config: &crate::config::Config,
    store: &crate::store::Store,
) -> Result<Option<std::sync::Arc<backend::LocalBackend>>, crate::server::ServeError> {
    if config.local.is_empty() {
        return Ok(None);
    }
    let backend = backend::LocalBackend::new(config.local.clone(), store.clone())?;
    backend.start_up().await?;
    Ok(Some(std::sync::Arc::new(backend)))
}
