//! Scheduled rotations in batches: when many rotations fall due at once, their durable steps
//! are written together, so a rotation costs its target's work plus a share of a few
//! statements instead of its own chain of about twenty.
//!
//! A batch of up to [`BATCH`] due rotations takes all its leases in one statement, reads their
//! states in one query, PREPAREs them in one transaction, applies and verifies each on its
//! target (within the connection's bound, as every attempt), and COMMITs the verified ones in
//! one transaction with their events. The guarantees are the one-rotation path's:
//! - the intent (the sealed candidate) is durable before any target is touched;
//! - a candidate is stored as the credential only after it logged in;
//! - every write is fenced per rotation by its lease's token.
//!
//! What a batch does not store is APPLIED and VERIFIED: only rotations whose apply may run
//! twice are batched ([`batchable`]), so after a crash recovery resumes the attempt from
//! PREPARED and applies the same sealed candidate again. A rotation whose apply or verify fails
//! leaves the batch and goes on through the one-rotation state machine (retries, a new
//! candidate, FAIL or parking), which stores each of its steps.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use uuid::Uuid;

use super::attempt::AttemptState;
use super::backend::{LocalBackend, Origin, Scope};
use super::error::LocalError;
use super::failpoint;
use super::registered::Registered;
use super::run::{HeldLease, Run, new_candidate, prepared_row};
use super::scheduler::log_outcome;
use crate::config::registry::LocalRotation;
use crate::drivers::{Driver as _, DriverError, LocalDriver};
use crate::proto::SecretRotation;
use crate::rotation::Credential;
use crate::store::StoreError;
use crate::store::local::AttemptRow;

/// The most rotations one batch takes.
pub const BATCH: usize = 64;

/// Batches under way at once.
pub const BATCHES_AT_ONCE: usize = 4;

/// Whether `rotation` may be rotated in a batch: a chosen secret of a dual-phase type (its
/// apply sets the inactive slot user's password as the admin, so applying the same candidate
/// again after a crash is harmless and needs no current password), with no consumers whose
/// confirmation it would wait for.
pub fn batchable(rotation: &LocalRotation, driver: &LocalDriver) -> bool {
    matches!(driver, LocalDriver::Chosen(_))
        && rotation.rotation_type.info().is_some_and(|t| t.dual_phase)
        && rotation.consumers().is_empty()
}

/// A rotation of the batch, resolved against the registered set.
struct Member<'a> {
    rotation: &'a LocalRotation,
    driver: &'a LocalDriver,
    rotation_id: String,
    attempt_id: Uuid,
    origin: Origin,
}

/// How a batched rotation's target work ended.
enum Applied<'a> {
    /// Applied and logged in: ready for the batch's COMMIT.
    Verified(Box<Run<'a>>, HeldLease),
    /// Left the batch; the one-rotation state machine finished it.
    Finished(String, Box<Result<SecretRotation, LocalError>>),
}

// === impl LocalBackend (batches) ===

impl LocalBackend {
    /// Rotates the due rotations `ids` (each [`batchable`]) as one batch and logs each one's
    /// outcome as the scheduler does.
    pub(super) async fn rotate_batch(&self, ids: &[Uuid]) {
        let current = self.current();
        let mut members = Vec::with_capacity(ids.len());
        for id in ids {
            match current.rotation(*id) {
                Ok((rotation, driver)) => members.push(Member {
                    rotation,
                    driver,
                    rotation_id: id.to_string(),
                    attempt_id: Uuid::now_v7(),
                    origin: Origin::background(Scope::Rotate, true),
                }),
                Err(error) => log_outcome(id, &Err(error)),
            }
        }
        let wanted = members
            .iter()
            .map(|m| (m.rotation_id.clone(), m.attempt_id.to_string()))
            .collect();
        let tokens = match self
            .in_span(
                "acquire leases",
                self.store()
                    .acquire_leases(wanted, self.store().lease_ttl()),
            )
            .await
        {
            Ok(tokens) => tokens,
            Err(error) => {
                tracing::warn!(%error, rotations = members.len(), "the scheduler could not take a batch's leases");
                return;
            }
        };
        let mut held = Vec::with_capacity(tokens.len());
        for member in members {
            match tokens.get(&member.rotation_id) {
                Some(token) => held.push((member, *token)),
                None => tracing::info!(rotation_id = %member.rotation_id,
                    "scheduled rotation skipped: an attempt is running"),
            }
        }
        self.rotate_held(&current, held).await;
    }

    /// The batch once its leases are held: resumes the rotations with an open attempt one by
    /// one, PREPAREs the others together, and takes them on.
    async fn rotate_held(&self, current: &Registered, held: Vec<(Member<'_>, i64)>) {
        let ids = held.iter().map(|(m, _)| m.rotation_id.clone()).collect();
        let rows = match self.store().batch_rows(ids).await {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, rotations = held.len(), "the scheduler could not read a batch's rotations");
                let leases = held
                    .iter()
                    .map(|(m, token)| (m.rotation_id.clone(), *token));
                self.release_all(leases.collect()).await;
                return;
            }
        };
        let mut resumed = Vec::new();
        let mut prepared = Vec::with_capacity(held.len());
        let mut not_due = Vec::new();
        let now = Utc::now();
        for (member, token) in held {
            match rows.get(&member.rotation_id) {
                // Rotated since the scan read it due (by another replica, whose COMMIT freed the
                // lease just taken): not rotated twice.
                Some(row)
                    if !row.open_attempt && row.state.next_rotation_at.is_none_or(|t| t > now) =>
                {
                    not_due.push((member.rotation_id, token));
                }
                Some(row) if !row.open_attempt => {
                    let slot = if row.has_credential {
                        1 - row.state.active_index.min(1)
                    } else {
                        0
                    };
                    match self.candidate(current, &member, token, slot) {
                        Ok((attempt, candidate)) => prepared.push((member, attempt, candidate)),
                        Err(error) => {
                            log_outcome(&member.rotation_id, &Err(error));
                            self.release_all(vec![(member.rotation_id.clone(), token)])
                                .await;
                        }
                    }
                }
                // An attempt left open (or a state row not written yet): the one-rotation
                // path resumes it (or rotates) under the lease already held.
                _ => resumed.push((member, token)),
            }
        }
        if !not_due.is_empty() {
            tracing::info!(
                rotations = not_due.len(),
                "scheduled rotations skipped: rotated since the scan"
            );
            self.release_all(not_due).await;
        }
        let resuming =
            futures::future::join_all(resumed.into_iter().map(|(member, token)| async move {
                let result = Box::pin(self.run_held(
                    current,
                    member.rotation,
                    member.driver,
                    member.attempt_id,
                    token,
                    member.origin,
                ))
                .await;
                log_outcome(&member.rotation_id, &result);
            }));
        let batch = self.prepare_and_apply(current, prepared, &rows);
        tokio::join!(resuming, batch);
    }

    /// A new attempt row of `member` for `slot`, with its sealed candidate.
    fn candidate(
        &self,
        current: &Registered,
        member: &Member<'_>,
        token: i64,
        slot: u32,
    ) -> Result<(AttemptRow, Credential), LocalError> {
        let LocalDriver::Chosen(d) = member.driver else {
            return Err(LocalError::Driver(DriverError::new(
                crate::drivers::DriverErrorKind::InvalidInput,
                member.driver.system(),
                crate::drivers::Phase::Apply,
                "only chosen secrets are rotated in batches",
            )));
        };
        let mut row = prepared_row(
            member.attempt_id,
            member.rotation_id.clone(),
            slot,
            token,
            &member.origin,
        );
        let credential = new_candidate(d, &mut row, current)?;
        Ok((row, credential))
    }

    /// PREPARE of the batch in one transaction, then each rotation's apply and verify, then
    /// COMMIT of the verified ones in one transaction; the leases are renewed meanwhile.
    async fn prepare_and_apply(
        &self,
        current: &Registered,
        members: Vec<(Member<'_>, AttemptRow, Credential)>,
        rows: &HashMap<String, crate::store::BatchRow>,
    ) {
        if members.is_empty() {
            return;
        }
        let attempts = members.iter().map(|(_, row, _)| row.clone()).collect();
        let stored = match self
            .in_span("prepare attempts", self.store().prepare_many(attempts))
            .await
        {
            Ok(stored) => stored,
            Err(error) => {
                tracing::warn!(%error, rotations = members.len(), "the scheduler could not prepare a batch");
                let leases = members
                    .iter()
                    .map(|(m, row, _)| (m.rotation_id.clone(), row.fencing_token));
                self.release_all(leases.collect()).await;
                return;
            }
        };
        failpoint::hit("prepared").await;
        let mut runs = Vec::with_capacity(members.len());
        for (member, row, candidate) in members {
            if stored.contains(&member.rotation_id) {
                runs.push(Run::start(
                    member.rotation,
                    member.driver,
                    current,
                    row,
                    Some(candidate),
                ));
            } else {
                log_outcome(&member.rotation_id, &Err(StoreError::LostLease.into()));
            }
        }
        let leases: Vec<(String, i64)> = runs
            .iter()
            .map(|run| (run.row.rotation_id.clone(), run.row.fencing_token))
            .collect();
        let applied = tokio::select! {
            applied = futures::future::join_all(runs.into_iter().map(|run| self.apply_in_batch(current, run))) => applied,
            never = self.keep_leases(&leases) => match never {},
        };
        let mut verified = Vec::with_capacity(applied.len());
        for outcome in applied {
            match outcome {
                Applied::Verified(run, lease) => verified.push((*run, lease)),
                Applied::Finished(rotation_id, result) => log_outcome(&rotation_id, &result),
            }
        }
        self.commit_batch(verified, rows).await;
    }

    /// Applies and verifies `run`'s candidate within its connection's bound; a failure hands the
    /// run to the one-rotation state machine.
    async fn apply_in_batch<'a>(&self, current: &Registered, mut run: Run<'a>) -> Applied<'a> {
        let _slot = self.connection_slot(current, run.rotation).await;
        let lease = HeldLease::new(run.row.fencing_token);
        // The driver's futures are boxed: inline, each batched rotation's future would be as
        // large as the largest driver's, and the batch moves each one several times.
        let failed = match (run.driver, run.candidate.as_ref()) {
            (LocalDriver::Chosen(d), Some(candidate)) => {
                match Box::pin(d.driver.apply_with_current(candidate, &[])).await {
                    Err(error) => {
                        run.maybe_applied |= error.may_have_changed_target();
                        Some(error)
                    }
                    Ok(()) => {
                        run.row.state = AttemptState::Applied;
                        Box::pin(d.driver.verify(candidate)).await.err()
                    }
                }
            }
            // Not batchable: `batchable` lets only chosen secrets in, each with its candidate.
            _ => None,
        };
        match failed {
            None if run.row.state == AttemptState::Applied => {
                run.row.state = AttemptState::Verified;
                Applied::Verified(Box::new(run), lease)
            }
            // Boxed for the same reason: the one-rotation state machine is the rare path.
            failed => Box::pin(self.finish_alone(run, lease, failed)).await,
        }
    }

    /// Finishes `run` through the one-rotation state machine after its batched apply or verify
    /// failed with `failed`, and releases its lease unless COMMIT or FAIL freed it.
    async fn finish_alone<'a>(
        &self,
        run: Run<'a>,
        lease: HeldLease,
        failed: Option<DriverError>,
    ) -> Applied<'a> {
        let rotation_id = run.row.rotation_id.clone();
        let result = self.drive_after(run, &lease, failed).await;
        self.release_unless_freed(&rotation_id, &lease).await;
        Applied::Finished(rotation_id, Box::new(result))
    }

    /// COMMIT of the verified runs in one transaction, each from its rotation's state as read
    /// before the batch.
    async fn commit_batch(
        &self,
        verified: Vec<(Run<'_>, HeldLease)>,
        rows: &HashMap<String, crate::store::BatchRow>,
    ) {
        if verified.is_empty() {
            return;
        }
        let now = Utc::now();
        let mut commits = Vec::with_capacity(verified.len());
        let mut recorded = HashSet::with_capacity(verified.len());
        for (run, _) in &verified {
            let Some(row) = rows.get(&run.row.rotation_id) else {
                continue;
            };
            match self.commit_record(run, row.state.clone(), now) {
                Ok((commit, _view)) => {
                    recorded.insert(run.row.rotation_id.clone());
                    commits.push((commit, run.row.fencing_token));
                }
                Err(error) => log_outcome(&run.row.rotation_id, &Err(error)),
            }
        }
        let committed = match self
            .in_span("commit attempts", self.store().commit_many(commits))
            .await
        {
            Ok(committed) => committed,
            Err(error) => {
                // Each attempt stays PREPARED with its lease released: recovery resumes it,
                // applying the same candidate again, at the next scan.
                tracing::warn!(%error, rotations = verified.len(), "the scheduler could not commit a batch; recovery finishes it");
                let leases = verified
                    .iter()
                    .map(|(run, lease)| (run.row.rotation_id.clone(), lease.token()));
                self.release_all(leases.collect()).await;
                return;
            }
        };
        let mut sinks = false;
        for (run, lease) in &verified {
            let rotation_id = &run.row.rotation_id;
            if committed.contains(rotation_id) {
                lease.mark_freed();
                sinks |= !run.rotation.sinks().is_empty();
                // One INFO line per batch below; a failure is logged per rotation.
                tracing::debug!(%rotation_id, "scheduled rotation committed");
                continue;
            }
            // Not recorded: its failure is logged already. Either way the attempt stays
            // PREPARED and recovery finishes it.
            if recorded.contains(rotation_id) {
                log_outcome(rotation_id, &Err(StoreError::LostLease.into()));
            }
            self.release_unless_freed(rotation_id, lease).await;
        }
        tracing::info!(
            rotations = verified.len(),
            committed = committed.len(),
            "scheduled batch committed"
        );
        failpoint::hit("committed").await;
        if sinks {
            self.wake_delivery();
        }
    }

    /// Renews `leases` every `lease_renew` while the batch runs (dropped when it ends).
    async fn keep_leases(&self, leases: &[(String, i64)]) -> std::convert::Infallible {
        loop {
            tokio::time::sleep(self.lease_renew()).await;
            if let Err(error) = self
                .store()
                .renew_leases(leases.to_vec(), self.store().lease_ttl())
                .await
            {
                tracing::warn!(%error, "cannot renew a batch's leases; retrying");
            }
        }
    }

    /// Releases each `(rotation id, token)` lease; a failure is logged (the leases expire).
    async fn release_all(&self, leases: Vec<(String, i64)>) {
        let count = leases.len();
        if let Err(error) = self
            .in_span("release leases", self.store().release_leases(leases))
            .await
        {
            tracing::warn!(%error, leases = count, "could not release a batch's leases; they expire");
        }
    }
}
