//! Local rotation: the pieces rotator needs to rotate credentials itself, crash-safely, without
//! Infisical.
//!
//! - `attempt`: the attempt state machine as pure decisions.
//! - `schedule`: when a rotation is next due.
//! - `backend`: leases, recovery and first create; `run`: one attempt's state machine;
//!   `issued`: the steps of provider-issued secrets; `reads`: get, list, credentials.
//! - `error`, `failpoint`: its error, and the crash test's failpoints.
//! - `scheduler`: the background task that rotates due rotations; `batch`: many due rotations
//!   with their durable steps written together.
//! - `registered`: the registry (declared in the configuration, [`crate::config::registry`])
//!   checked against the drivers' descriptors, with its keys and built drivers; swapped whole on
//!   reload.
//! - `reload`: SIGHUP re-reads the configuration file and swaps the registered set.
//! - `limits`: rotations at once per connection, for calls and the scheduler alike.
//! - `view`: a local rotation in the API's `SecretRotation` shape.
//! - `handover`: confirmed handover: consumers' confirmations, and the check an attempt that
//!   would replace a credential makes first.

mod attempt;
mod backend;
mod batch;
mod error;
mod failpoint;
mod handover;
mod issued;
#[cfg(test)]
mod issued_tests;
mod limits;
mod reads;
mod recovery;
mod registered;
mod reload;
mod run;
mod schedule;
mod scheduler;
mod view;

pub use self::backend::{LEASE_TTL, LocalBackend, Origin, Scope};
pub use self::error::LocalError;
pub use self::failpoint::FAILPOINT_VAR;
pub use self::reads::CommittedValues;
pub use self::recovery::Recovery;
pub use self::reload::{reload, spawn_on_sighup};
pub use self::scheduler::{PERIOD as SCHEDULER_PERIOD, Scheduler};

/// Builds the local backend when rotations are registered and runs its start-up (state rows,
/// first credentials of new rotations) before the server answers anything. Attempts left open by
/// a crashed process are not waited for: `Recovery` resumes them in the background.
///
/// # Errors
///
/// A rotation that cannot be built, or a store failure during start-up.
///
/// The registry is taken out of `config` (left empty there), not copied: with thousands of
/// rotations a second copy kept for the server's life would double its memory.
pub async fn start(
    config: &mut crate::config::Config,
    store: &crate::store::Store,
) -> Result<Option<std::sync::Arc<backend::LocalBackend>>, error::LocalError> {
    if config.local.is_empty() {
        return Ok(None);
    }
    let registry = std::mem::take(&mut config.local);
    let backend = backend::LocalBackend::new(registry, store.clone())?
        .with_lease_renew(config.local_timing.lease_renew);
    backend.start_up().await?;
    Ok(Some(std::sync::Arc::new(backend)))
}

/// Checks the configuration's local registry against the drivers (apps, options, types,
/// parameters) without building anything that talks to a target: what `serve` reports with the
/// other configuration problems before it binds a port.
pub fn check(config: &crate::config::Config) -> Vec<crate::config::ConfigProblem> {
    if config.local.is_empty() {
        return Vec::new();
    }
    match registered::Registered::build(config.local.clone()) {
        Ok(_) => Vec::new(),
        Err(error::LocalError::Misconfigured(problems)) => problems,
        Err(other) => vec![crate::config::ConfigProblem {
            key: "rotations".to_owned(),
            reason: other.to_string(),
        }],
    }
}
