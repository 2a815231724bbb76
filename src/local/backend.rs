//! The local backend: runs the attempt state machine of DESIGN §5 against a driver, under the
//! rotation's lease, with every transition stored (and fenced) before the next action.
//!
//! PREPARE stores the intent for the inactive slot before the target is touched; then
//! apply → verify (fresh login) → COMMIT (one transaction: slot credential, active index,
//! timestamps, status, outbox event): [`run`](super::run). Recovery at start-up resumes open
//! attempts from their stored state; a rotation without a stored credential gets slot 0 issued
//! the same way. This file holds the lease, recovery and reload; reads are in
//! [`reads`](super::reads).

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use tokio::sync::Notify;
use uuid::Uuid;

use super::attempt::{AttemptState, Budget};
use super::error::LocalError;
use super::limits::ConnectionLimits;
use super::registered::Registered;
use super::run::HeldLease;
use crate::config::registry::{LocalRotation, Registry};
use crate::drivers::LocalDriver;
use crate::proto::SecretRotation;
use crate::store::local::{
    AttemptStore as _, LeaseOutcome, LeaseStore as _, RotationStateStore as _,
};
use crate::store::{Store, in_transaction_span};

/// How long a lease lasts past each fenced write.
pub use crate::store::LEASE_TTL;

/// How often a running attempt renews its lease unless configured: a quarter of [`LEASE_TTL`].
const DEFAULT_LEASE_RENEW: Duration = Duration::from_secs(30);

/// First credentials being issued at once at start-up or reload; each connection's
/// `max_parallel_rotations` still bounds how many reach one target.
const FIRST_ISSUES_AT_ONCE: usize = 256;

/// How often a replayed call looks at a still running attempt.
const REPLAY_POLL: Duration = Duration::from_millis(50);

/// What a call to [`LocalBackend::rotate`] may do once it holds the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// Finish an attempt left open, else rotate.
    #[default]
    Rotate,
    /// Finish an attempt left open; nothing else (recovery).
    ResumeOnly,
    /// Issue slot 0 when no credential is stored yet; nothing else (start-up, reload). Checked
    /// under the lease, so two replicas starting together issue it once.
    FirstCredential,
}

/// Who asked for an attempt.
#[derive(Debug, Clone)]
pub struct Origin {
    /// What the call may do.
    pub scope: Scope,
    /// The scheduler (true) or a caller.
    pub scheduled: bool,
    /// The request id of the call (or a generated one).
    pub request_id: String,
    /// The caller's idempotency key: a key already seen for the rotation answers with the
    /// outcome of the attempt it named instead of rotating again.
    pub idempotency_key: Option<String>,
}

// === impl Origin ===

impl Origin {
    /// An attempt nobody called for (the scheduler, start-up): a request id of its own and no
    /// idempotency key.
    pub fn background(scope: Scope, scheduled: bool) -> Self {
        Self {
            scope,
            scheduled,
            request_id: crate::context::new_request_id(),
            idempotency_key: None,
        }
    }
}

/// The local backend over the store.
#[derive(Debug)]
pub struct LocalBackend {
    /// Swapped whole on reload; each call keeps the set it started with.
    current: RwLock<Arc<Registered>>,
    store: Store,
    budget: Budget,
    limits: ConnectionLimits,
    /// Wakes background recovery when an attempt is left open.
    recovery: Arc<Notify>,
    /// How often a running attempt renews its lease.
    lease_renew: Duration,
    /// Wakes the delivery worker after a commit of a rotation with sinks.
    delivery: Arc<Notify>,
}

// === impl LocalBackend ===

impl LocalBackend {
    /// The backend over `store`, serving `registry`.
    ///
    /// # Errors
    ///
    /// A rotation whose driver cannot be built, or no key ring although rotations exist.
    pub fn new(registry: Registry, store: Store) -> Result<Self, LocalError> {
        Ok(Self {
            current: RwLock::new(Arc::new(Registered::build(registry)?)),
            store,
            budget: Budget::default(),
            limits: ConnectionLimits::default(),
            recovery: Arc::new(Notify::new()),
            lease_renew: DEFAULT_LEASE_RENEW,
            delivery: Arc::new(Notify::new()),
        })
    }

    /// The backend over `store`, serving a registered set built elsewhere (engine tests).
    #[cfg(test)]
    pub(crate) fn with_registered(registered: Registered, store: Store) -> Self {
        Self {
            current: RwLock::new(Arc::new(registered)),
            store,
            budget: Budget::default(),
            limits: ConnectionLimits::default(),
            recovery: Arc::new(Notify::new()),
            lease_renew: DEFAULT_LEASE_RENEW,
            delivery: Arc::new(Notify::new()),
        }
    }

    /// This backend with running attempts renewing their lease every `every`
    /// (`local.lease_renew_seconds`; the TTL is the store's).
    #[must_use]
    pub fn with_lease_renew(mut self, every: Duration) -> Self {
        self.lease_renew = every;
        self
    }

    /// How often a running attempt renews its lease.
    pub(super) fn lease_renew(&self) -> Duration {
        self.lease_renew
    }

    /// What background recovery waits on between passes.
    pub(super) fn recovery_signal(&self) -> Arc<Notify> {
        Arc::clone(&self.recovery)
    }

    /// Asks background recovery for a pass soon (an attempt was left open).
    pub(super) fn wake_recovery(&self) {
        self.recovery.notify_one();
    }

    /// What the delivery worker waits on: a commit of a rotation with sinks.
    pub fn delivery_signal(&self) -> Arc<Notify> {
        Arc::clone(&self.delivery)
    }

    pub(super) fn wake_delivery(&self) {
        self.delivery.notify_one();
    }

    /// The store (the delivery worker keeps its table there).
    pub fn shared_store(&self) -> &Store {
        &self.store
    }

    pub(super) fn store(&self) -> &Store {
        &self.store
    }

    pub(super) fn budget(&self) -> Budget {
        self.budget
    }

    /// The registered set in force now. A call takes it once and keeps it to the end, so a
    /// reload never changes a running attempt's rotation, driver or keys.
    pub fn current(&self) -> Arc<Registered> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the registered set with `registry` (SIGHUP): builds every driver first, so an
    /// unusable registry changes nothing; creates state rows of new rotations, swaps, then
    /// issues the first credential of rotations that have none. Calls already running finish
    /// on the set they started with.
    ///
    /// # Errors
    ///
    /// The registry cannot be built (nothing changed), or the store failed.
    pub async fn reload(&self, registry: Registry) -> Result<(), LocalError> {
        let next = Arc::new(Registered::build(registry)?);
        self.store.ensure_rotations(rotation_ids(&next)).await?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&next);
        tracing::info!(
            rotations = next.registry.rotations.len(),
            connections = next.registry.connections.len(),
            "local registry reloaded"
        );
        let issued = self.issue_first_credentials(&next).await;
        // Sinks added by the reload are owed the current version now, not at the next scan.
        self.wake_delivery();
        issued
    }

    /// Runs one store transaction inside its span, named for this store's database.
    pub(super) async fn in_span<T>(
        &self,
        operation: &'static str,
        work: impl std::future::Future<Output = Result<T, crate::store::StoreError>>,
    ) -> Result<T, crate::store::StoreError> {
        in_transaction_span(self.store.system(), operation, work).await
    }

    /// Start-up: frees leases of a crashed predecessor (on a store of this process alone),
    /// creates state rows, then issues slot 0 of every rotation that has no credential and no
    /// open attempt. Open attempts are left to background recovery (`Recovery`), so a target
    /// that does not answer never delays serving. Failures are recorded on the rotation (status
    /// failed, event) and logged; they never stop the server.
    ///
    /// # Errors
    ///
    /// The store could not be read or written.
    pub async fn start_up(&self) -> Result<(), LocalError> {
        self.store.break_leases().await?;
        let current = self.current();
        self.store.ensure_rotations(rotation_ids(&current)).await?;
        self.issue_first_credentials(&current).await
    }

    /// Finishes every open attempt of a registered rotation whose lease is free, concurrently:
    /// at start, after an attempt was left open because its target stopped answering, and
    /// periodically for attempts a crashed replica left on a shared store once their lease
    /// expired. An attempt whose lease is held is running; it is left alone.
    ///
    /// Returns how many attempts of registered rotations are still open afterwards.
    ///
    /// # Errors
    ///
    /// The store could not be read.
    pub async fn resume_open_attempts(&self) -> Result<usize, LocalError> {
        let current = self.current();
        let mut resuming = Vec::new();
        for row in self.store.unheld_open_attempts(Utc::now()).await? {
            let Ok(id) = Uuid::parse_str(&row.rotation_id) else {
                continue;
            };
            if current.registry.rotation(id).is_none() {
                tracing::warn!(rotation_id = %row.rotation_id, attempt_id = %row.attempt_id,
                    "an open attempt belongs to a rotation no longer registered; left as is");
                continue;
            }
            let origin = Origin {
                scope: Scope::ResumeOnly,
                scheduled: row.scheduled,
                request_id: row.request_id.clone(),
                idempotency_key: None,
            };
            resuming.push(async move {
                match self.rotate(id, origin).await {
                    Ok(_) | Err(LocalError::Busy { .. }) => {}
                    Err(error) => {
                        tracing::warn!(rotation_id = %row.rotation_id, %error, "recovered attempt did not commit");
                    }
                }
            });
        }
        futures::future::join_all(resuming).await;
        let still_open = self
            .store
            .open_attempts()
            .await?
            .iter()
            .filter_map(|row| Uuid::parse_str(&row.rotation_id).ok())
            .filter(|id| current.registry.rotation(*id).is_some())
            .count();
        Ok(still_open)
    }

    /// Issues slot 0 of every rotation of `registered` that has no stored credential and no
    /// open attempt (an open first create is recovery's), [`FIRST_ISSUES_AT_ONCE`] at a time
    /// and within each connection's bound, as the scheduler runs due rotations.
    async fn issue_first_credentials(&self, registered: &Registered) -> Result<(), LocalError> {
        let open: HashSet<String> = self
            .store
            .open_attempts()
            .await?
            .into_iter()
            .map(|row| row.rotation_id)
            .collect();
        let issued = self.store.rotations_with_credentials().await?;
        let first = registered.registry.rotations.iter().filter(|rotation| {
            let id = rotation.id.to_string();
            !open.contains(&id) && !issued.contains(&id)
        });
        futures::stream::iter(first)
            .for_each_concurrent(FIRST_ISSUES_AT_ONCE, |rotation| async move {
                let id = rotation.id;
                let origin = Origin::background(Scope::FirstCredential, false);
                match self.rotate(id, origin).await {
                    Ok(_) => {}
                    Err(LocalError::Busy { attempt_id, .. }) => {
                        tracing::info!(rotation_id = %id, %attempt_id, "first credential being issued by another attempt");
                    }
                    Err(error) => {
                        tracing::warn!(rotation_id = %id, %error, "first credential not issued")
                    }
                }
            })
            .await;
        Ok(())
    }

    /// The ids of stored rotations whose `next_rotation_at` is at or before `now`.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn due_rotation_ids(&self, now: DateTime<Utc>) -> Result<Vec<String>, LocalError> {
        Ok(self.store.due(now).await?)
    }

    /// The registered rotation `id`, checked against the request's type.
    ///
    /// # Errors
    ///
    /// [`LocalError::TypeMismatch`].
    pub fn lookup(
        &self,
        id: Uuid,
        requested: crate::proto::RotationType,
    ) -> Option<Result<LocalRotation, LocalError>> {
        let current = self.current();
        let rotation = current.registry.rotation(id)?.clone();
        if requested != rotation.rotation_type {
            return Some(Err(LocalError::TypeMismatch {
                rotation_id: id.to_string(),
                declared: rotation.rotation_type,
                requested,
            }));
        }
        Some(Ok(rotation))
    }

    /// Rotates `id` (or, when an attempt of it was left open, finishes that one).
    ///
    /// # Errors
    ///
    /// [`LocalError::Busy`] when another attempt holds the lease; the attempt's failure.
    pub async fn rotate(&self, id: Uuid, origin: Origin) -> Result<SecretRotation, LocalError> {
        let current = self.current();
        let (rotation, driver) = current.rotation(id)?;
        let rotation_id = id.to_string();
        if let Some(key) = &origin.idempotency_key
            && let Some(seen) = self.store.attempt_for_key(&rotation_id, key).await?
        {
            return self.replay(&current, rotation, seen).await;
        }
        let attempt_id = Uuid::now_v7();
        let token = match self
            .in_span(
                "acquire lease",
                self.store.acquire(
                    &rotation_id,
                    &attempt_id.to_string(),
                    self.store.lease_ttl(),
                ),
            )
            .await?
        {
            LeaseOutcome::Acquired(token) => token,
            LeaseOutcome::HeldBy(holder) => {
                return Err(LocalError::Busy {
                    rotation_id,
                    attempt_id: holder,
                });
            }
        };
        self.run_held(&current, rotation, driver, attempt_id, token, origin)
            .await
    }

    /// Runs the attempt of `rotation` under the lease its caller took with `token`, within the
    /// connection's bound, renewing the lease meanwhile; afterwards releases the lease unless
    /// COMMIT or FAIL freed it.
    pub(super) async fn run_held(
        &self,
        current: &Registered,
        rotation: &LocalRotation,
        driver: &LocalDriver,
        attempt_id: Uuid,
        token: i64,
        origin: Origin,
    ) -> Result<SecretRotation, LocalError> {
        let rotation_id = rotation.id.to_string();
        // The lease first, then the connection's slot: a call for a rotation already running is
        // refused at once instead of queuing, and recovery never waits behind busy connections.
        let _slot = self.connection_slot(current, rotation).await;
        let lease = HeldLease::new(token);
        let result = tokio::select! {
            result = self.run_under_lease(current, rotation, driver, attempt_id, &lease, origin) => result,
            never = self.keep_lease(&rotation_id, lease.token()) => match never {},
        };
        self.release_unless_freed(&rotation_id, &lease).await;
        result
    }

    /// Releases `lease` unless COMMIT or FAIL freed it already; a failure is logged (the lease
    /// expires).
    pub(super) async fn release_unless_freed(&self, rotation_id: &str, lease: &HeldLease) {
        if !lease.freed()
            && let Err(error) = self
                .in_span(
                    "release lease",
                    self.store.release(rotation_id, lease.token()),
                )
                .await
        {
            tracing::warn!(%rotation_id, %error, "could not release the lease; it expires");
        }
    }

    /// A slot of `rotation`'s connection bound (its `max_parallel_rotations`), waited for.
    pub(super) async fn connection_slot(
        &self,
        current: &Registered,
        rotation: &LocalRotation,
    ) -> tokio::sync::OwnedSemaphorePermit {
        let limit = current
            .registry
            .connections
            .get(&rotation.connection)
            .map_or(crate::config::registry::DEFAULT_MAX_PARALLEL, |c| {
                c.max_parallel_rotations
            });
        self.limits.acquire(&rotation.connection, limit).await
    }

    /// Renews the lease of `rotation_id` every `lease_renew` while the attempt runs (dropped
    /// when it ends). Once the lease is lost it stops: the attempt's next fenced write fails.
    async fn keep_lease(&self, rotation_id: &str, token: i64) -> std::convert::Infallible {
        loop {
            tokio::time::sleep(self.lease_renew).await;
            match self
                .store
                .renew(rotation_id, token, self.store.lease_ttl())
                .await
            {
                Ok(()) => {}
                Err(crate::store::StoreError::LostLease) => {
                    tracing::warn!(%rotation_id, "the attempt's lease was taken over; its next write is refused");
                    break;
                }
                Err(error) => {
                    tracing::warn!(%rotation_id, %error, "cannot renew the lease; retrying")
                }
            }
        }
        std::future::pending().await
    }

    /// The outcome of attempt `attempt_id`, named by an idempotency key already seen: the
    /// rotation as it is now when the attempt committed, its failure when it failed; while it
    /// runs, waits for it (the caller's deadline bounds the wait).
    async fn replay(
        &self,
        current: &Registered,
        rotation: &LocalRotation,
        attempt_id: Uuid,
    ) -> Result<SecretRotation, LocalError> {
        loop {
            let row = self.store.attempt(attempt_id).await?;
            match row.as_ref().map(|r| r.state) {
                Some(AttemptState::Committed) => return self.view_of(current, rotation).await,
                Some(AttemptState::Failed) => {
                    return Err(LocalError::Replayed {
                        attempt_id: attempt_id.to_string(),
                        message: row.and_then(|r| r.error).unwrap_or_default(),
                    });
                }
                // Recorded but not found: the store lost it; nothing to replay.
                None => return Err(LocalError::NoCredential(rotation.id.to_string())),
                Some(_) => tokio::time::sleep(REPLAY_POLL).await,
            }
        }
    }
}

/// The ids of every registered rotation, as the store keys them.
fn rotation_ids(registered: &Registered) -> Vec<String> {
    registered
        .registry
        .rotations
        .iter()
        .map(|rotation| rotation.id.to_string())
        .collect()
}
