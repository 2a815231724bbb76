//! The local-rotation tables: rotation state, sealed credentials, attempts and leases.
//!
//! Every write of an attempt is fenced: it runs in a transaction that first renews the
//! rotation's lease `WHERE fencing_token = ?`; zero rows means another holder took the lease and
//! the write is refused with [`StoreError::LostLease`]. COMMIT and FAIL are one transaction each,
//! with the outbox event inside, so the stored state and its event never disagree.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{NewOutboxEvent, StoreError};
use crate::rotation::AttemptState;

/// A rotation's stored status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalStatus {
    /// The last attempt succeeded (or none has run).
    Success,
    /// The last attempt failed.
    Failed,
}

/// A rotation's stored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationState {
    /// The slot applications should use.
    pub active_index: u32,
    /// Outcome of the last attempt.
    pub status: LocalStatus,
    /// Last successful rotation.
    pub last_rotated_at: Option<DateTime<Utc>>,
    /// Last attempt, successful or not.
    pub last_rotation_attempted_at: Option<DateTime<Utc>>,
    /// When the scheduler rotates it next.
    pub next_rotation_at: Option<DateTime<Utc>>,
    /// Whether the last rotation was a manual one.
    pub is_last_rotation_manual: bool,
    /// Redacted message of the last failure.
    pub last_message: Option<String>,
    /// When the row was created.
    pub created_at: DateTime<Utc>,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
}

/// One sealed slot credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredential {
    /// 0 or 1.
    pub slot: u32,
    /// The key that sealed it.
    pub key_id: String,
    /// Nonce, ciphertext and tag.
    pub ciphertext: Vec<u8>,
    /// The login name of a chosen secret or the provider's id of an issued one; `None` in
    /// rows stored before ids were (the slot's configured user).
    pub id: Option<String>,
    /// The rotation's active index, read in the same statement: a reader never pairs the
    /// credentials of one commit with the index of another.
    pub active_index: u32,
}

/// The outcome of asking for a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// Held, with this fencing token.
    Acquired(i64),
    /// Another holder has it until it expires.
    HeldBy(String),
}

/// An attempt row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRow {
    /// Its id (also the lease holder's name).
    pub attempt_id: Uuid,
    /// The rotation.
    pub rotation_id: String,
    /// The slot it writes.
    pub slot: u32,
    /// Where it stands.
    pub state: AttemptState,
    /// The key that sealed the candidate.
    pub key_id: String,
    /// The sealed candidate secret (empty while an issued secret is not yet issued).
    pub candidate: Vec<u8>,
    /// The candidate's id: the user of a chosen secret; the provider's id of an issued one,
    /// once the provider answered.
    pub candidate_id: Option<String>,
    /// Issued secrets: the ids the provider held when the attempt was prepared.
    pub ids_before: Option<Vec<String>>,
    /// The fencing token of the lease it runs under.
    pub fencing_token: i64,
    /// True when the scheduler started it.
    pub scheduled: bool,
    /// The request id of the call that started it.
    pub request_id: String,
    /// Transient failures so far.
    pub transient: u32,
    /// Candidates regenerated so far.
    pub regenerations: u32,
    /// Redacted failure reason.
    pub error: Option<String>,
    /// When it was prepared.
    pub created_at: DateTime<Utc>,
}

/// The one-transaction COMMIT of an attempt.
#[derive(Debug, Clone)]
pub struct CommitAttempt {
    /// The attempt.
    pub attempt_id: Uuid,
    /// The rotation.
    pub rotation_id: String,
    /// The slot that receives the candidate and becomes active.
    pub slot: u32,
    /// Sealing key of the candidate.
    pub key_id: String,
    /// The sealed candidate.
    pub ciphertext: Vec<u8>,
    /// The candidate's id (user or provider's id).
    pub credential_id: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
    /// The next scheduled rotation.
    pub next_rotation_at: Option<DateTime<Utc>>,
    /// Whether a caller (not the scheduler) asked for it.
    pub manual: bool,
    /// The RotationCompleted outbox row.
    pub event: NewOutboxEvent,
    /// The rotation's sinks: each one's wanted version becomes the new version, in the same
    /// transaction.
    pub sinks: Vec<String>,
}

/// The one-transaction FAIL of an attempt: the stored credentials are not touched.
#[derive(Debug, Clone)]
pub struct FailAttempt {
    /// The attempt.
    pub attempt_id: Uuid,
    /// The rotation.
    pub rotation_id: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The next scheduled rotation.
    pub next_rotation_at: Option<DateTime<Utc>>,
    /// Whether a caller asked for it.
    pub manual: bool,
    /// Redacted message; never a secret.
    pub message: String,
    /// The RotationFailed outbox row.
    pub event: NewOutboxEvent,
}

/// Per-rotation leases with monotonic fencing tokens.
pub trait LeaseStore: Send + Sync {
    /// Takes the lease when it is free or expired; the token is larger than any before it.
    ///
    /// # Errors
    ///
    /// The store could not write.
    fn acquire(
        &self,
        rotation_id: &str,
        holder: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<LeaseOutcome, StoreError>> + Send;

    /// Extends the lease by `ttl` from now, if `token` still holds it: a running attempt
    /// renews between its fenced writes, so a slow step does not let the lease expire.
    ///
    /// # Errors
    ///
    /// [`StoreError::LostLease`] when another holder took it; or the store could not write.
    fn renew(
        &self,
        rotation_id: &str,
        token: i64,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Gives the lease up, if `token` still holds it.
    ///
    /// # Errors
    ///
    /// The store could not write.
    fn release(
        &self,
        rotation_id: &str,
        token: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Rotation state and sealed credentials.
pub trait RotationStateStore: Send + Sync {
    /// Creates the state row of each rotation that has none, a few hundred rows per statement
    /// and all of them in one transaction (10,000 rotations at start-up are one write, not
    /// 10,000).
    ///
    /// # Errors
    ///
    /// The store could not write.
    fn ensure_rotations(
        &self,
        rotation_ids: Vec<String>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The state of a rotation.
    ///
    /// # Errors
    ///
    /// The store could not read.
    fn rotation_state(
        &self,
        rotation_id: &str,
    ) -> impl Future<Output = Result<Option<RotationState>, StoreError>> + Send;

    /// The sealed credentials of a rotation, by slot.
    ///
    /// # Errors
    ///
    /// The store could not read.
    fn credentials(
        &self,
        rotation_id: &str,
    ) -> impl Future<Output = Result<Vec<StoredCredential>, StoreError>> + Send;

    /// The ids of the rotations that have at least one stored credential.
    ///
    /// # Errors
    ///
    /// The store could not read.
    fn rotations_with_credentials(
        &self,
    ) -> impl Future<Output = Result<std::collections::HashSet<String>, StoreError>> + Send;

    /// Rotations whose `next_rotation_at` is at or before `now`.
    ///
    /// # Errors
    ///
    /// The store could not read.
    fn due(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
}

/// Attempts, their fenced transitions, and the one-transaction COMMIT / FAIL.
pub trait AttemptStore: Send + Sync {
    /// Stores a PREPARED attempt (the intent) under its fencing token, and in the same
    /// transaction the caller's idempotency key naming it, so a crash cannot separate them.
    ///
    /// # Errors
    ///
    /// [`StoreError::LostLease`], or the store could not write.
    fn prepare(
        &self,
        row: &AttemptRow,
        idempotency_key: Option<&str>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Moves an open attempt to `row.state`, with `row`'s candidate and counts.
    ///
    /// # Errors
    ///
    /// [`StoreError::LostLease`], or the store could not write.
    fn transition(&self, row: &AttemptRow) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Re-binds an open attempt to a newly acquired lease (recovery).
    ///
    /// # Errors
    ///
    /// [`StoreError::LostLease`], or the store could not write.
    fn adopt(
        &self,
        attempt_id: Uuid,
        rotation_id: &str,
        token: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Open (PREPARED, APPLIED, VERIFIED) attempts, oldest first.
    ///
    /// # Errors
    ///
    /// The store could not read.
    fn open_attempts(&self) -> impl Future<Output = Result<Vec<AttemptRow>, StoreError>> + Send;

    /// Open attempts whose rotation's lease is free at `now` (released, expired or never
    /// taken), oldest first: the ones to resume. An attempt under a live lease is running on
    /// some replica; taking its lease the moment it commits would only refuse callers.
    ///
    /// # Errors
    ///
    /// The store could not read.
    fn unheld_open_attempts(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<AttemptRow>, StoreError>> + Send;

    /// The open attempt of one rotation, if any (the lease allows at most one).
    ///
    /// # Errors
    ///
    /// The store could not read.
    fn open_attempt(
        &self,
        rotation_id: &str,
    ) -> impl Future<Output = Result<Option<AttemptRow>, StoreError>> + Send;

    /// One attempt.
    ///
    /// # Errors
    ///
    /// The store could not read.
    fn attempt(
        &self,
        attempt_id: Uuid,
    ) -> impl Future<Output = Result<Option<AttemptRow>, StoreError>> + Send;

    /// Slot credential, active index, version (one more), timestamps, status, message, outbox
    /// event, each sink's wanted version, attempt state and the lease's release, in one
    /// transaction.
    ///
    /// # Errors
    ///
    /// [`StoreError::LostLease`], or the store could not write (nothing was written).
    fn commit(
        &self,
        commit: &CommitAttempt,
        token: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Status, message, timestamps, outbox event, attempt state and the lease's release, in one
    /// transaction.
    ///
    /// # Errors
    ///
    /// [`StoreError::LostLease`], or the store could not write (nothing was written).
    fn fail(
        &self,
        fail: &FailAttempt,
        token: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Everything local rotation needs from a store.
pub trait LocalStore: LeaseStore + RotationStateStore + AttemptStore + Clone + 'static {}

impl<T: LeaseStore + RotationStateStore + AttemptStore + Clone + 'static> LocalStore for T {}

// === impl AttemptState (storage names) ===

/// The stored name of a state.
pub fn state_name(state: AttemptState) -> &'static str {
    match state {
        AttemptState::Prepared => "prepared",
        AttemptState::Applied => "applied",
        AttemptState::Verified => "verified",
        AttemptState::Committed => "committed",
        AttemptState::Failed => "failed",
    }
}

/// The state of a stored name.
///
/// # Errors
///
/// [`StoreError::Corrupt`] for an unknown name.
pub fn parse_state(name: &str) -> Result<AttemptState, StoreError> {
    Ok(match name {
        "prepared" => AttemptState::Prepared,
        "applied" => AttemptState::Applied,
        "verified" => AttemptState::Verified,
        "committed" => AttemptState::Committed,
        "failed" => AttemptState::Failed,
        other => return Err(StoreError::Corrupt(format!("attempt state {other:?}"))),
    })
}
