//! One attempt under the rotation's lease: PREPARE (or resume), then the state machine of
//! [`attempt`](super::attempt) until it commits or fails, every transition stored (and fenced)
//! before the next action.
//!
//! A chosen secret is generated and sealed at PREPARE, before the target is touched. An issued
//! secret has no value yet at PREPARE: the provider's ids are listed and recorded first, and
//! what the provider returns is sealed in the store in the write that marks the attempt APPLIED,
//! before anything else happens ([`issued`](super::issued)).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use uuid::Uuid;

use super::attempt::{self, ActionResult, AttemptState, Next, Spent};
use super::backend::{LocalBackend, Origin, Scope};
use super::error::LocalError;
use super::failpoint;
use super::registered::Registered;
use super::schedule::Schedule;
use crate::config::registry::LocalRotation;
use crate::crypto::{CryptoError, Sealed, associated_data};
use crate::drivers::{
    Driver as _, DriverError, DriverErrorKind, LocalDriver, Phase, RotationDriver, Slot,
};
use crate::proto::{Backend, SecretRotation, Trigger};
use crate::rotation::{AttemptRecord, Classify as _, Credential};
use crate::secret::SecretString;
use crate::store::local::{
    AttemptRow, AttemptStore as _, CommitAttempt, FailAttempt, LocalStatus, RotationState,
    RotationStateStore as _,
};

/// First backoff after a transient failure; doubles each time, with full jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// Longest backoff.
const BACKOFF_CAP: Duration = Duration::from_secs(10);

/// The lease an attempt runs under: its fencing token, and whether the attempt's last write
/// (COMMIT or FAIL, which free it in the same transaction) has freed it already.
pub(super) struct HeldLease {
    token: i64,
    freed: AtomicBool,
}

// === impl HeldLease ===

impl HeldLease {
    /// The lease acquired with `token`, not freed yet.
    pub(super) fn new(token: i64) -> Self {
        Self {
            token,
            freed: AtomicBool::new(false),
        }
    }

    /// Its fencing token.
    pub(super) fn token(&self) -> i64 {
        self.token
    }

    /// Whether COMMIT or FAIL freed it: then releasing it is a write for nothing.
    pub(super) fn freed(&self) -> bool {
        self.freed.load(Ordering::Relaxed)
    }

    pub(super) fn mark_freed(&self) {
        self.freed.store(true, Ordering::Relaxed);
    }
}

/// A running attempt: its row, its plaintext candidate and what it has spent.
pub(super) struct Run<'a> {
    pub(super) rotation: &'a LocalRotation,
    pub(super) driver: &'a LocalDriver,
    pub(super) registered: &'a Registered,
    pub(super) row: AttemptRow,
    /// The candidate; `None` while an issued secret is not issued yet.
    pub(super) candidate: Option<Credential>,
    /// Whether the target may hold the candidate although the state does not say so: a
    /// resumed attempt (the crashed run may have sent it), or an apply that failed after it
    /// may have reached the target.
    pub(super) maybe_applied: bool,
    /// The replaced secret this run already revoked (to make room at a provider's limit), so
    /// the step before COMMIT does not revoke it again.
    pub(super) retired: Option<String>,
    pub(super) started: Instant,
}

// === impl Run ===

impl<'a> Run<'a> {
    /// A run of the attempt in `row`, timed from now.
    pub(super) fn start(
        rotation: &'a LocalRotation,
        driver: &'a LocalDriver,
        registered: &'a Registered,
        row: AttemptRow,
        candidate: Option<Credential>,
    ) -> Self {
        Self {
            rotation,
            driver,
            registered,
            row,
            candidate,
            maybe_applied: false,
            retired: None,
            started: Instant::now(),
        }
    }
}

// === impl LocalBackend (attempts) ===

impl LocalBackend {
    /// Resumes the rotation's open attempt, or prepares a new one, and drives it to its end.
    pub(super) async fn run_under_lease(
        &self,
        current: &Registered,
        rotation: &LocalRotation,
        driver: &LocalDriver,
        attempt_id: Uuid,
        lease: &HeldLease,
        origin: Origin,
    ) -> Result<SecretRotation, LocalError> {
        let (rotation_id, token) = (rotation.id.to_string(), lease.token());
        let run = match self.store().open_attempt(&rotation_id).await? {
            Some(row) => {
                self.resume(current, rotation, driver, row, token, &origin)
                    .await?
            }
            None if origin.scope == Scope::ResumeOnly => {
                return self.view_of(current, rotation).await;
            }
            None => {
                let stored = self.store().credentials(&rotation_id).await?;
                if origin.scope == Scope::FirstCredential && !stored.is_empty() {
                    return self.view_of(current, rotation).await;
                }
                // Dual-phase types write the inactive slot, so the active credential keeps
                // working for one more interval; single-phase types (one credential, replaced
                // in place) always write slot 0.
                let dual_phase = rotation.rotation_type.info().is_some_and(|t| t.dual_phase);
                // The active index comes with the credentials (one statement reads both).
                let slot = match stored.first() {
                    Some(credential) if dual_phase => 1 - credential.active_index.min(1),
                    _ => 0,
                };
                // Confirmed handover: an attempt that would replace a stored credential waits
                // for the rotation's consumers (or their grace) before anything is stored.
                if stored.iter().any(|c| c.slot == slot) {
                    self.handover_gate(rotation, &origin).await?;
                }
                self.prepare(current, rotation, driver, attempt_id, token, slot, &origin)
                    .await?
            }
        };
        self.drive(run, lease).await
    }

    /// Resume: the last effect is unknown, so the state machine starts from the stored state
    /// with no result. The attempt's holder is gone (its lease expired, or the process
    /// restarted): a takeover.
    async fn resume<'a>(
        &self,
        current: &'a Registered,
        rotation: &'a LocalRotation,
        driver: &'a LocalDriver,
        mut row: AttemptRow,
        token: i64,
        origin: &Origin,
    ) -> Result<Run<'a>, LocalError> {
        let rotation_id = &row.rotation_id;
        crate::telemetry::metrics::lease_taken_over();
        self.store()
            .adopt(row.attempt_id, rotation_id, token)
            .await?;
        row.fencing_token = token;
        if let Some(key) = &origin.idempotency_key {
            self.store()
                .remember_key(rotation_id, key, row.attempt_id)
                .await?;
        }
        let candidate = if row.candidate.is_empty() {
            None
        } else {
            let plain = current.keys.open(
                &Sealed {
                    key_id: row.key_id.clone(),
                    bytes: row.candidate.clone(),
                },
                &associated_data(rotation_id, row.slot),
            )?;
            let secret =
                String::from_utf8(plain).map_err(|_| LocalError::Crypto(CryptoError::Open))?;
            let id = match (&row.candidate_id, driver) {
                (Some(id), _) => id.clone(),
                (None, LocalDriver::Chosen(d)) => d.driver.username_for(slot_of(&row)).to_owned(),
                (None, LocalDriver::Issued(_)) => String::new(),
            };
            Some(Credential {
                id,
                secret: SecretString::new(secret),
            })
        };
        tracing::info!(%rotation_id, attempt_id = %row.attempt_id, state = ?row.state, "resuming an open attempt");
        let mut run = Run::start(rotation, driver, current, row, candidate);
        run.maybe_applied = true;
        Ok(run)
    }

    /// PREPARE: the intent (slot; for a chosen secret its sealed candidate) is stored before
    /// the target is touched.
    #[allow(clippy::too_many_arguments)]
    async fn prepare<'a>(
        &self,
        current: &'a Registered,
        rotation: &'a LocalRotation,
        driver: &'a LocalDriver,
        attempt_id: Uuid,
        token: i64,
        slot: u32,
        origin: &Origin,
    ) -> Result<Run<'a>, LocalError> {
        let mut row = prepared_row(attempt_id, rotation.id.to_string(), slot, token, origin);
        let candidate = match driver {
            LocalDriver::Chosen(d) => Some(new_candidate(d, &mut row, current)?),
            LocalDriver::Issued(_) => None,
        };
        self.in_span(
            "prepare attempt",
            self.store()
                .prepare(&row, origin.idempotency_key.as_deref()),
        )
        .await?;
        failpoint::hit("prepared").await;
        Ok(Run::start(rotation, driver, current, row, candidate))
    }

    /// Runs the state machine from the run's stored state until it commits or fails. COMMIT
    /// and FAIL free the lease in their own write and mark it so.
    async fn drive(&self, run: Run<'_>, lease: &HeldLease) -> Result<SecretRotation, LocalError> {
        self.drive_after(run, lease, None).await
    }

    /// [`drive`](Self::drive) from the run's state after its last action ended with `failed`
    /// (none: the state's next action runs).
    pub(super) async fn drive_after(
        &self,
        mut run: Run<'_>,
        lease: &HeldLease,
        failed: Option<DriverError>,
    ) -> Result<SecretRotation, LocalError> {
        let mut last_error: Option<DriverError> = None;
        let mut last: Option<ActionResult> =
            failed.map(|error| note_failure(&mut run, error, &mut last_error));
        loop {
            let spent = Spent {
                transient: run.row.transient,
                regenerations: run.row.regenerations,
            };
            let action = match attempt::next(run.row.state, last, spent, self.budget()) {
                Next::RetryAfterBackoff(retry) => {
                    tokio::time::sleep(backoff(run.row.transient)).await;
                    match retry {
                        attempt::Retry::Apply => Next::Apply,
                        attempt::Retry::Verify => Next::Verify,
                    }
                }
                other => other,
            };
            let outcome = match action {
                Next::Apply => self.apply(&mut run).await,
                Next::Verify => self.verify(&mut run).await,
                Next::Regenerate => {
                    self.regenerate(&mut run).await?;
                    Ok(())
                }
                Next::Commit => match self.retire_replaced(&run).await {
                    Ok(()) => return self.commit(&run, lease).await,
                    Err(Step::Store(e)) => return Err(e),
                    Err(Step::Driver(e)) => {
                        if e.is_transient() && run.row.transient < self.budget().transient_retries {
                            run.row.transient += 1;
                            tokio::time::sleep(backoff(run.row.transient)).await;
                            continue;
                        }
                        // The replaced secret stays; withdraw the new one and keep the stored
                        // credentials as they were.
                        self.withdraw_candidate(&run).await;
                        return Err(self.fail(&run, e, lease).await);
                    }
                },
                Next::Fail | Next::Done => {
                    let error = last_error.unwrap_or_else(|| {
                        DriverError::new(
                            DriverErrorKind::Server,
                            run.driver.system(),
                            Phase::Apply,
                            "the attempt ended without a result",
                        )
                    });
                    if error.is_transient() && may_hold_candidate(&run) {
                        return Err(self.park(&run, error));
                    }
                    self.withdraw_candidate(&run).await;
                    return Err(self.fail(&run, error, lease).await);
                }
                Next::RetryAfterBackoff(_) => Ok(()),
            };
            last = match outcome {
                Ok(()) => None,
                Err(Step::Store(e)) => return Err(e),
                Err(Step::Driver(e)) => {
                    if action == Next::Apply && e.may_have_changed_target() {
                        run.maybe_applied = true;
                    }
                    Some(note_failure(&mut run, e, &mut last_error))
                }
            };
        }
    }

    /// Sets (chosen) or issues and seals (issued) the candidate; APPLIED is recorded.
    async fn apply(&self, run: &mut Run<'_>) -> Result<(), Step> {
        match (run.driver, &run.candidate) {
            (LocalDriver::Chosen(d), Some(candidate)) => {
                let current = self.current_passwords(run).await?;
                d.driver.apply_with_current(candidate, &current).await?;
            }
            (LocalDriver::Issued(issuer), _) => {
                // Issued secrets reach APPLIED inside `issue`: the provider's answer is sealed
                // in the same write.
                return self.issue(run, issuer).await;
            }
            (LocalDriver::Chosen(d), None) => {
                return Err(Step::Driver(DriverError::new(
                    DriverErrorKind::InvalidInput,
                    d.driver.system(),
                    Phase::Apply,
                    "the attempt has no stored candidate",
                )));
            }
        }
        if run.row.state == AttemptState::Prepared {
            run.row.state = AttemptState::Applied;
            self.record(&run.row).await?;
            failpoint::hit("applied").await;
        }
        Ok(())
    }

    /// The passwords the slot's user may hold before this apply, most likely first, for a
    /// single-phase driver that logs in as the target: the slot's stored credential, then the
    /// rotation's configured initial password. Dual-phase drivers change passwords as an admin
    /// and get none.
    async fn current_passwords(&self, run: &Run<'_>) -> Result<Vec<SecretString>, Step> {
        let dual_phase = run
            .rotation
            .rotation_type
            .info()
            .is_some_and(|t| t.dual_phase);
        if dual_phase {
            return Ok(Vec::new());
        }
        let mut current = Vec::new();
        let stored_credentials = self
            .store()
            .credentials(&run.row.rotation_id)
            .await
            .map_err(LocalError::from)?;
        for stored in stored_credentials {
            if stored.slot == run.row.slot {
                let credential = super::reads::open_stored(
                    run.registered,
                    &run.row.rotation_id,
                    run.driver,
                    &stored,
                )?;
                current.push(credential.secret);
            }
        }
        current.extend(run.rotation.initial_password().cloned());
        Ok(current)
    }

    /// Logs in with the candidate on a fresh connection; VERIFIED is recorded.
    async fn verify(&self, run: &mut Run<'_>) -> Result<(), Step> {
        let Some(candidate) = &run.candidate else {
            // Resumed at APPLIED without a sealed value: impossible by construction (the value
            // is sealed in the write that records APPLIED); issue again.
            run.row.state = AttemptState::Prepared;
            return Ok(());
        };
        match run.driver {
            LocalDriver::Chosen(d) => d.driver.verify(candidate).await?,
            LocalDriver::Issued(issuer) => issuer.verify(candidate).await?,
        }
        run.row.state = AttemptState::Verified;
        self.record(&run.row).await?;
        failpoint::hit("verified").await;
        Ok(())
    }

    /// A new candidate after the target refused one (password policy); still PREPARED.
    async fn regenerate(&self, run: &mut Run<'_>) -> Result<(), LocalError> {
        match run.driver {
            LocalDriver::Chosen(d) => {
                run.candidate = Some(new_candidate(d, &mut run.row, run.registered)?);
            }
            LocalDriver::Issued(_) => {
                // An issued secret is the provider's: nothing to regenerate here; issue again.
                run.row.state = AttemptState::Prepared;
            }
        }
        run.row.regenerations += 1;
        self.in_span("record attempt state", self.store().transition(&run.row))
            .await?;
        Ok(())
    }

    pub(super) async fn record(&self, row: &AttemptRow) -> Result<(), LocalError> {
        Ok(self
            .in_span("record attempt state", self.store().transition(row))
            .await?)
    }

    async fn commit(&self, run: &Run<'_>, lease: &HeldLease) -> Result<SecretRotation, LocalError> {
        let state = self.state(&run.row.rotation_id).await?;
        let (commit, view) = self.commit_record(run, state, Utc::now())?;
        self.in_span(
            "commit attempt",
            self.store().commit(&commit, run.row.fencing_token),
        )
        .await?;
        lease.mark_freed();
        failpoint::hit("committed").await;
        if !run.rotation.sinks().is_empty() {
            self.wake_delivery();
        }
        Ok(view)
    }

    /// What COMMIT of `run` at `now` writes (from the rotation's `state` before it), and the
    /// rotation as it answers afterwards.
    pub(super) fn commit_record(
        &self,
        run: &Run<'_>,
        mut state: RotationState,
        now: DateTime<Utc>,
    ) -> Result<(CommitAttempt, SecretRotation), LocalError> {
        let manual = !run.row.scheduled;
        state.active_index = run.row.slot;
        state.status = LocalStatus::Success;
        state.last_rotated_at = Some(now);
        state.last_rotation_attempted_at = Some(now);
        state.next_rotation_at = schedule(run.rotation).after_success(now, manual);
        state.is_last_rotation_manual = manual;
        state.last_message = None;
        state.updated_at = now;
        let view = super::view::secret_rotation(&run.registered.registry, run.rotation, &state);
        let event = self.event(run, now, Some(view.clone()), None)?;
        let commit = CommitAttempt {
            attempt_id: run.row.attempt_id,
            rotation_id: run.row.rotation_id.clone(),
            slot: run.row.slot,
            key_id: run.row.key_id.clone(),
            ciphertext: run.row.candidate.clone(),
            credential_id: run.candidate.as_ref().map(|c| c.id.clone()),
            at: now,
            next_rotation_at: state.next_rotation_at,
            manual,
            event,
            sinks: run
                .rotation
                .sinks()
                .iter()
                .map(|s| s.name.clone())
                .collect(),
        };
        Ok((commit, view))
    }

    /// Leaves the attempt open for background recovery: the target may hold the candidate, so
    /// failing now could leave the stored credential of the slot dead. The lease is released by
    /// the caller; recovery resumes the attempt (verify first) when the target answers.
    fn park(&self, run: &Run<'_>, error: DriverError) -> LocalError {
        tracing::warn!(rotation_id = %run.row.rotation_id, attempt_id = %run.row.attempt_id,
            state = ?run.row.state, reason = error.reason(),
            "the target stopped answering mid-attempt; the attempt stays open and recovery retries it");
        self.wake_recovery();
        LocalError::Pending {
            attempt_id: run.row.attempt_id.to_string(),
            cause: error,
        }
    }

    async fn fail(&self, run: &Run<'_>, error: DriverError, lease: &HeldLease) -> LocalError {
        let rotation_id = &run.row.rotation_id;
        let now = Utc::now();
        let manual = !run.row.scheduled;
        let message = format!("{}: {error}", error.reason());
        let failure = LocalError::Driver(error);
        let result = async {
            let mut state = self.state(rotation_id).await?;
            state.status = LocalStatus::Failed;
            state.last_rotation_attempted_at = Some(now);
            state.next_rotation_at = schedule(run.rotation).after_failure(now);
            state.is_last_rotation_manual = manual;
            state.last_message = Some(message.clone());
            let view = super::view::secret_rotation(&run.registered.registry, run.rotation, &state);
            let event = self.event(run, now, Some(view), Some(failure.failure()))?;
            self.in_span(
                "fail attempt",
                self.store().fail(
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
            lease.mark_freed();
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
        failure: Option<crate::rotation::Failure>,
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
            resolves_event_id: None,
        };
        crate::events::recorder::outbox_row(&record, crate::telemetry::current_trace_headers())
            .map_err(LocalError::Event)
    }
}

/// Why a step of the state machine stopped: the driver's failure (classified, retried by the
/// state machine) or the store's (the attempt stops; recovery resumes it).
pub(super) enum Step {
    Driver(DriverError),
    Store(LocalError),
}

impl From<DriverError> for Step {
    fn from(e: DriverError) -> Self {
        Self::Driver(e)
    }
}

impl From<LocalError> for Step {
    fn from(e: LocalError) -> Self {
        Self::Store(e)
    }
}

/// A PREPARED attempt row of `rotation_id` for `slot` under `token`, with no candidate yet.
pub(super) fn prepared_row(
    attempt_id: Uuid,
    rotation_id: String,
    slot: u32,
    token: i64,
    origin: &Origin,
) -> AttemptRow {
    AttemptRow {
        attempt_id,
        rotation_id,
        slot,
        state: AttemptState::Prepared,
        key_id: String::new(),
        candidate: Vec::new(),
        candidate_id: None,
        ids_before: None,
        fencing_token: token,
        scheduled: origin.scheduled,
        request_id: origin.request_id.clone(),
        transient: 0,
        regenerations: 0,
        error: None,
        created_at: Utc::now(),
    }
}

/// A new password for the chosen secret `d`, for the user of `row`'s slot, sealed into `row`
/// as its candidate.
pub(super) fn new_candidate(
    d: &RotationDriver,
    row: &mut AttemptRow,
    current: &Registered,
) -> Result<Credential, LocalError> {
    let credential = Credential {
        id: d.driver.username_for(slot_of(row)).to_owned(),
        secret: d.password_policy.generate(),
    };
    seal_into(row, current, &credential)?;
    Ok(credential)
}

/// Seals `credential` as the row's candidate (rotation id and slot as associated data).
pub(super) fn seal_into(
    row: &mut AttemptRow,
    current: &Registered,
    credential: &Credential,
) -> Result<(), LocalError> {
    let sealed = current.keys.seal(
        credential.secret.expose().as_bytes(),
        &associated_data(&row.rotation_id, row.slot),
    )?;
    row.key_id = sealed.key_id;
    row.candidate = sealed.bytes;
    row.candidate_id = Some(credential.id.clone());
    Ok(())
}

/// Whether the target may hold the run's candidate: it was applied (or verified), or an apply
/// may have reached the target before failing, or the run resumes a crashed one.
fn may_hold_candidate(run: &Run<'_>) -> bool {
    run.row.state != AttemptState::Prepared || run.maybe_applied
}

pub(super) fn slot_of(row: &AttemptRow) -> Slot {
    Slot::from_index(row.slot).unwrap_or(Slot::First)
}

fn note_failure(
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

/// Full-jitter exponential backoff for the `n`th transient failure.
fn backoff(n: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << n.min(16))
        .min(BACKOFF_CAP);
    ceiling.mul_f64(rand::random::<f64>())
}
