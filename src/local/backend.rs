//! The local backend: runs the attempt state machine of DESIGN §5 against a driver, under the
//! rotation's lease, with every transition stored (and fenced) before the next action.
//!
//! PREPARE stores the sealed candidate for the inactive slot before the target is touched; then
//! apply → verify (fresh login) → COMMIT (one transaction: slot credential, active index,
//! timestamps, status, outbox event). Recovery at start-up resumes open attempts from their
//! stored state; a rotation without a stored credential gets slot 0 issued the same way.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use uuid::Uuid;

use super::attempt::{self, ActionResult, AttemptState, Budget, Next, Spent};
use super::crypto::{Sealed, associated_data};
use super::error::LocalError;
use super::failpoint;
use super::limits::ConnectionLimits;
use super::registered::Registered;
use super::registry::{LocalRotation, Registry};
use super::schedule::Schedule;
use crate::drivers::{Credential, Driver as _, DriverError, DriverErrorKind, RotationDriver, Slot};
use crate::engine::AttemptRecord;
use crate::error::ServiceError;
use crate::proto::{
    Backend, GeneratedCredential, GetGeneratedCredentialsResponse, SecretRotation, Trigger,
    UsernamePasswordCredential, generated_credential,
};
use crate::secret::SecretString;
use crate::store::local::{
    AttemptRow, AttemptStore as _, CommitAttempt, FailAttempt, LeaseOutcome, LeaseStore as _,
    LocalStatus, RotationState, RotationStateStore as _,
};
use crate::store::{Store, in_transaction_span};

/// How long a lease lasts past each fenced write.
pub use crate::store::LEASE_TTL;

/// First backoff after a transient failure; doubles each time, with full jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// How often a replayed call looks at a still running attempt.
const REPLAY_POLL: Duration = Duration::from_millis(50);
/// Longest backoff.
const BACKOFF_CAP: Duration = Duration::from_secs(10);

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

/// The local backend over the store.
#[derive(Debug)]
pub struct LocalBackend {
    /// Swapped whole on reload; each call keeps the set it started with.
    current: RwLock<Arc<Registered>>,
    store: Store,
    budget: Budget,
    limits: ConnectionLimits,
}

/// A running attempt: its row, its plaintext candidate and what it has spent.
struct Run<'a> {
    rotation: &'a LocalRotation,
    driver: &'a RotationDriver,
    registered: &'a Registered,
    row: AttemptRow,
    password: SecretString,
    started: Instant,
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
        })
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
        for rotation in &next.registry.rotations {
            self.store
                .ensure_rotation(&rotation.id.to_string(), None)
                .await?;
        }
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&next);
        tracing::info!(
            rotations = next.registry.rotations.len(),
            connections = next.registry.connections.len(),
            "local registry reloaded"
        );
        self.issue_first_credentials(&next).await
    }

    /// Runs one store transaction inside its span, named for this store's database.
    async fn in_span<T>(
        &self,
        operation: &'static str,
        work: impl std::future::Future<Output = Result<T, crate::store::StoreError>>,
    ) -> Result<T, crate::store::StoreError> {
        in_transaction_span(self.store.system(), operation, work).await
    }

    /// Start-up: frees leases of a crashed predecessor (on a store of this process alone),
    /// creates state rows, resumes open attempts, then issues slot 0 of every rotation that has
    /// no credential. Failures are recorded on the rotation (status failed, event) and logged;
    /// they never stop the server.
    ///
    /// # Errors
    ///
    /// The store could not be read or written.
    pub async fn start_up(&self) -> Result<(), LocalError> {
        self.store.break_leases().await?;
        let current = self.current();
        for rotation in &current.registry.rotations {
            self.store
                .ensure_rotation(&rotation.id.to_string(), None)
                .await?;
        }
        self.resume_open_attempts().await?;
        self.issue_first_credentials(&current).await
    }

    /// Finishes every open attempt of a registered rotation whose lease is free: at start-up,
    /// and periodically for attempts a crashed replica left on a shared store once their lease
    /// expired. An attempt whose lease is held is running; it is left alone.
    ///
    /// # Errors
    ///
    /// The store could not be read.
    pub async fn resume_open_attempts(&self) -> Result<(), LocalError> {
        let current = self.current();
        for row in self.store.open_attempts().await? {
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
            match self.rotate(id, origin).await {
                Ok(_) | Err(LocalError::Busy { .. }) => {}
                Err(error) => {
                    tracing::warn!(rotation_id = %row.rotation_id, %error, "recovered attempt did not commit");
                }
            }
        }
        Ok(())
    }

    /// Issues slot 0 of every rotation of `registered` that has no stored credential.
    async fn issue_first_credentials(&self, registered: &Registered) -> Result<(), LocalError> {
        for rotation in &registered.registry.rotations {
            let id = rotation.id.to_string();
            if !self.store.credentials(&id).await?.is_empty() {
                continue;
            }
            let origin = Origin {
                scope: Scope::FirstCredential,
                scheduled: false,
                request_id: crate::context::new_request_id(),
                idempotency_key: None,
            };
            match self.rotate(rotation.id, origin).await {
                Ok(_) => {}
                Err(LocalError::Busy { attempt_id, .. }) => {
                    tracing::info!(rotation_id = %id, %attempt_id, "first credential being issued by another attempt");
                }
                Err(error) => {
                    tracing::warn!(rotation_id = %id, %error, "first credential not issued")
                }
            }
        }
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
                self.store
                    .acquire(&rotation_id, &attempt_id.to_string(), LEASE_TTL),
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
        // The lease first, then the connection's slot: a call for a rotation already running is
        // refused at once instead of queuing, and recovery never waits behind busy connections.
        let limit = current
            .registry
            .connections
            .get(&rotation.connection)
            .map_or(super::registry::DEFAULT_MAX_PARALLEL, |c| {
                c.max_parallel_rotations
            });
        let _slot = self.limits.acquire(&rotation.connection, limit).await;
        let result = self
            .run_under_lease(&current, rotation, driver, attempt_id, token, origin)
            .await;
        if let Err(error) = self
            .in_span("release lease", self.store.release(&rotation_id, token))
            .await
        {
            tracing::warn!(%rotation_id, %error, "could not release the lease; it expires");
        }
        result
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

    async fn run_under_lease(
        &self,
        current: &Registered,
        rotation: &LocalRotation,
        driver: &RotationDriver,
        attempt_id: Uuid,
        token: i64,
        origin: Origin,
    ) -> Result<SecretRotation, LocalError> {
        let rotation_id = rotation.id.to_string();
        let open = self
            .store
            .open_attempts()
            .await?
            .into_iter()
            .find(|a| a.rotation_id == rotation_id);
        let run = match open {
            Some(mut row) => {
                // Resume: the last effect is unknown, so the state machine starts from the
                // stored state with no result. The attempt's holder is gone (its lease expired,
                // or the process restarted): a takeover.
                crate::telemetry::metrics::lease_taken_over();
                self.store
                    .adopt(row.attempt_id, &rotation_id, token)
                    .await?;
                row.fencing_token = token;
                if let Some(key) = &origin.idempotency_key {
                    self.store
                        .remember_key(&rotation_id, key, row.attempt_id)
                        .await?;
                }
                let aad = associated_data(&rotation_id, row.slot);
                let plain = current.keys.open(
                    &Sealed {
                        key_id: row.key_id.clone(),
                        bytes: row.candidate.clone(),
                    },
                    &aad,
                )?;
                let password = SecretString::new(
                    String::from_utf8(plain)
                        .map_err(|_| LocalError::Crypto(super::crypto::CryptoError::Open))?,
                );
                tracing::info!(%rotation_id, attempt_id = %row.attempt_id, state = ?row.state, "resuming an open attempt");
                Run {
                    rotation,
                    driver,
                    registered: current,
                    row,
                    password,
                    started: Instant::now(),
                }
            }
            None if origin.scope == Scope::ResumeOnly => {
                return self.view_of(current, rotation).await;
            }
            None => {
                let stored = self.store.credentials(&rotation_id).await?;
                if origin.scope == Scope::FirstCredential && !stored.is_empty() {
                    return self.view_of(current, rotation).await;
                }
                let state = self.state(&rotation_id).await?;
                let slot = if stored.is_empty() {
                    0
                } else {
                    1 - state.active_index.min(1)
                };
                let password = driver.password_policy.generate();
                let sealed = current.keys.seal(
                    password.expose().as_bytes(),
                    &associated_data(&rotation_id, slot),
                )?;
                let row = AttemptRow {
                    attempt_id,
                    rotation_id: rotation_id.clone(),
                    slot,
                    state: AttemptState::Prepared,
                    key_id: sealed.key_id,
                    candidate: sealed.bytes,
                    fencing_token: token,
                    scheduled: origin.scheduled,
                    request_id: origin.request_id.clone(),
                    transient: 0,
                    regenerations: 0,
                    error: None,
                    created_at: Utc::now(),
                };
                self.in_span(
                    "prepare attempt",
                    self.store.prepare(&row, origin.idempotency_key.as_deref()),
                )
                .await?;
                failpoint::hit("prepared").await;
                Run {
                    rotation,
                    driver,
                    registered: current,
                    row,
                    password,
                    started: Instant::now(),
                }
            }
        };
        self.drive(run).await
    }

    /// Runs the state machine from the run's stored state until it commits or fails.
    async fn drive(&self, mut run: Run<'_>) -> Result<SecretRotation, LocalError> {
        let slot = Slot::from_index(run.row.slot).unwrap_or(Slot::First);
        let username = run.driver.driver.username_for(slot).to_owned();
        let mut last: Option<ActionResult> = None;
        let mut last_error: Option<DriverError> = None;
        loop {
            let spent = Spent {
                transient: run.row.transient,
                regenerations: run.row.regenerations,
            };
            let action = match attempt::next(run.row.state, last, spent, self.budget) {
                Next::RetryAfterBackoff(retry) => {
                    tokio::time::sleep(backoff(run.row.transient)).await;
                    match retry {
                        attempt::Retry::Apply => Next::Apply,
                        attempt::Retry::Verify => Next::Verify,
                    }
                }
                other => other,
            };
            let credential = Credential {
                username: username.clone(),
                password: run.password.clone(),
            };
            match action {
                Next::Apply => match run.driver.driver.apply(&credential).await {
                    Ok(()) => {
                        last = None;
                        if run.row.state == AttemptState::Prepared {
                            run.row.state = AttemptState::Applied;
                            self.in_span("record attempt state", self.store.transition(&run.row))
                                .await?;
                            failpoint::hit("applied").await;
                        }
                    }
                    Err(e) => last = Some(self.note_failure(&mut run, e, &mut last_error)),
                },
                Next::Verify => match run.driver.driver.verify(&credential).await {
                    Ok(()) => {
                        last = None;
                        run.row.state = AttemptState::Verified;
                        self.in_span("record attempt state", self.store.transition(&run.row))
                            .await?;
                        failpoint::hit("verified").await;
                    }
                    Err(e) => last = Some(self.note_failure(&mut run, e, &mut last_error)),
                },
                Next::Regenerate => {
                    run.password = run.driver.password_policy.generate();
                    let sealed = run.registered.keys.seal(
                        run.password.expose().as_bytes(),
                        &associated_data(&run.row.rotation_id, run.row.slot),
                    )?;
                    run.row.key_id = sealed.key_id;
                    run.row.candidate = sealed.bytes;
                    run.row.regenerations += 1;
                    self.in_span("record attempt state", self.store.transition(&run.row))
                        .await?;
                    last = None;
                }
                Next::Commit => return self.commit(&run).await,
                Next::Fail | Next::Done => {
                    let error = last_error.unwrap_or_else(|| {
                        DriverError::new(
                            DriverErrorKind::Server,
                            run.driver.driver.system(),
                            crate::drivers::Phase::Apply,
                            "the attempt ended without a result",
                        )
                    });
                    return Err(self.fail(&run, error).await);
                }
                Next::RetryAfterBackoff(_) => {}
            }
        }
    }

    fn note_failure(
        &self,
        run: &mut Run<'_>,
        error: DriverError,
        last_error: &mut Option<DriverError>,
    ) -> ActionResult {
        let result = if error.is_transient() {
            run.row.transient += 1;
            ActionResult::Transient
        } else if error.kind() == DriverErrorKind::PasswordRejected {
            ActionResult::CandidateRejected
        } else {
            ActionResult::Permanent
        };
        tracing::info!(rotation_id = %run.row.rotation_id, attempt_id = %run.row.attempt_id,
            reason = error.reason(), ?result, "driver action failed");
        *last_error = Some(error);
        result
    }

    fn schedule(rotation: &LocalRotation) -> Schedule {
        Schedule {
            auto_rotation: rotation.auto_rotation,
            interval_days: rotation.interval_days,
            rotate_at_hours: rotation.rotate_at.0,
            rotate_at_minutes: rotation.rotate_at.1,
        }
    }

    async fn commit(&self, run: &Run<'_>) -> Result<SecretRotation, LocalError> {
        let rotation_id = &run.row.rotation_id;
        let now = Utc::now();
        let manual = !run.row.scheduled;
        let mut state = self.state(rotation_id).await?;
        state.active_index = run.row.slot;
        state.status = LocalStatus::Success;
        state.last_rotated_at = Some(now);
        state.last_rotation_attempted_at = Some(now);
        state.next_rotation_at = Self::schedule(run.rotation).after_success(now, manual);
        state.is_last_rotation_manual = manual;
        state.last_message = None;
        state.updated_at = now;
        let view = super::view::secret_rotation(&run.registered.registry, run.rotation, &state);
        let event = self.event(run, now, Some(view.clone()), None)?;
        let commit = CommitAttempt {
            attempt_id: run.row.attempt_id,
            rotation_id: rotation_id.clone(),
            slot: run.row.slot,
            key_id: run.row.key_id.clone(),
            ciphertext: run.row.candidate.clone(),
            at: now,
            next_rotation_at: state.next_rotation_at,
            manual,
            event,
        };
        self.in_span(
            "commit attempt",
            self.store.commit(&commit, run.row.fencing_token),
        )
        .await?;
        failpoint::hit("committed").await;
        Ok(view)
    }

    async fn fail(&self, run: &Run<'_>, error: DriverError) -> LocalError {
        let rotation_id = &run.row.rotation_id;
        let now = Utc::now();
        let manual = !run.row.scheduled;
        let failure = LocalError::Driver(error.clone());
        let message = format!("{}: {error}", error.reason());
        let result = async {
            let mut state = self.state(rotation_id).await?;
            state.status = LocalStatus::Failed;
            state.last_rotation_attempted_at = Some(now);
            state.next_rotation_at = Self::schedule(run.rotation).after_failure(now);
            state.is_last_rotation_manual = manual;
            state.last_message = Some(message.clone());
            let view = super::view::secret_rotation(&run.registered.registry, run.rotation, &state);
            let event = self.event(
                run,
                now,
                Some(view),
                Some(ServiceError::Local(failure.clone())),
            )?;
            self.in_span(
                "fail attempt",
                self.store.fail(
                    &FailAttempt {
                        attempt_id: run.row.attempt_id,
                        rotation_id: rotation_id.clone(),
                        at: now,
                        next_rotation_at: state.next_rotation_at,
                        manual,
                        message,
                        event,
                    },
                    run.row.fencing_token,
                ),
            )
            .await?;
            Ok::<_, LocalError>(())
        }
        .await;
        match result {
            Ok(()) => failure,
            Err(e) => e,
        }
    }

    fn event(
        &self,
        run: &Run<'_>,
        now: DateTime<Utc>,
        rotation: Option<SecretRotation>,
        failure: Option<ServiceError>,
    ) -> Result<crate::store::NewOutboxEvent, LocalError> {
        let record = AttemptRecord {
            event_id: Uuid::now_v7(),
            time: now,
            rotation_id: run.row.rotation_id.clone(),
            rotation_type: run.rotation.rotation_type,
            rotation,
            backend: Backend::Local,
            trigger: if run.row.scheduled {
                Trigger::Scheduled
            } else {
                Trigger::Manual
            },
            attempt_number: 1 + run.row.transient,
            duration: run.started.elapsed(),
            request_id: run.row.request_id.clone(),
            upstream_req_id: None,
            failure,
        };
        crate::events::recorder::outbox_row(&record, crate::telemetry::current_trace_headers())
            .map_err(|e| LocalError::Store {
                message: e.to_string(),
                transient: false,
            })
    }

    async fn state(&self, rotation_id: &str) -> Result<RotationState, LocalError> {
        self.store
            .rotation_state(rotation_id)
            .await?
            .ok_or_else(|| LocalError::NoCredential(rotation_id.to_owned()))
    }

    /// The rotation as `GetSecretRotation` answers it.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn get(&self, rotation: &LocalRotation) -> Result<SecretRotation, LocalError> {
        self.view_of(&self.current(), rotation).await
    }

    async fn view_of(
        &self,
        current: &Registered,
        rotation: &LocalRotation,
    ) -> Result<SecretRotation, LocalError> {
        let state = self.state(&rotation.id.to_string()).await?;
        Ok(super::view::secret_rotation(
            &current.registry,
            rotation,
            &state,
        ))
    }

    /// Every registered rotation of `rotation_type` (all for `Unspecified`) in `project_id`
    /// (all when empty).
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn list(
        &self,
        rotation_type: crate::proto::RotationType,
        project_id: &str,
    ) -> Result<Vec<SecretRotation>, LocalError> {
        let current = self.current();
        let mut out = Vec::new();
        for rotation in &current.registry.rotations {
            let type_ok = rotation_type == crate::proto::RotationType::Unspecified
                || rotation.rotation_type == rotation_type;
            if type_ok && (project_id.is_empty() || rotation.project_id == project_id) {
                out.push(self.view_of(&current, rotation).await?);
            }
        }
        Ok(out)
    }

    /// The registered rotation named `name` in the labels of `lookup`.
    pub fn by_name(&self, lookup: &crate::proto::RotationName) -> Option<LocalRotation> {
        self.current()
            .registry
            .rotations
            .iter()
            .find(|r| {
                r.name == lookup.name
                    && (lookup.project_id.is_empty() || r.project_id == lookup.project_id)
                    && (lookup.environment.is_empty() || r.environment == lookup.environment)
                    && (lookup.secret_path.is_empty() || r.folder_path == lookup.secret_path)
            })
            .cloned()
    }

    /// The stored credentials, decrypted, ordered by slot.
    ///
    /// # Errors
    ///
    /// The store failed, a credential does not decrypt, or none is issued yet.
    pub async fn generated_credentials(
        &self,
        rotation: &LocalRotation,
    ) -> Result<GetGeneratedCredentialsResponse, LocalError> {
        let rotation_id = rotation.id.to_string();
        let state = self.state(&rotation_id).await?;
        let stored = self.store.credentials(&rotation_id).await?;
        if stored.is_empty() {
            return Err(LocalError::NoCredential(rotation_id));
        }
        let current = self.current();
        let (_, driver) = current.rotation(rotation.id)?;
        let mut generated_credentials = Vec::new();
        for c in &stored {
            let plain = current.keys.open(
                &Sealed {
                    key_id: c.key_id.clone(),
                    bytes: c.ciphertext.clone(),
                },
                &associated_data(&rotation_id, c.slot),
            )?;
            let password = String::from_utf8(plain)
                .map_err(|_| LocalError::Crypto(super::crypto::CryptoError::Open))?;
            let slot = Slot::from_index(c.slot).unwrap_or(Slot::First);
            let value = UsernamePasswordCredential {
                username: driver.driver.username_for(slot).to_owned(),
                password,
            };
            use crate::proto::RotationType as T;
            let kind = match rotation.rotation_type {
                T::MysqlCredentials => generated_credential::Kind::MysqlCredentials(value),
                T::RedisCredentials => generated_credential::Kind::RedisCredentials(value),
                _ => generated_credential::Kind::PostgresCredentials(value),
            };
            generated_credentials.push(GeneratedCredential { kind: Some(kind) });
        }
        // With a single credential (after the first create) its index is the active one: 0.
        let active_index = if stored.len() == 1 {
            0
        } else {
            state.active_index
        };
        Ok(GetGeneratedCredentialsResponse {
            rotation_id,
            r#type: rotation.rotation_type as i32,
            active_index,
            generated_credentials,
        })
    }
}

/// Full-jitter exponential backoff for the `n`th transient failure.
fn backoff(n: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << n.min(16))
        .min(BACKOFF_CAP);
    ceiling.mul_f64(rand::random::<f64>())
}
