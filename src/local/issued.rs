//! The steps of an attempt whose secret the provider issues (AWS access keys, Azure, Okta and
//! Databricks client secrets): the provider creates the secret, shows it once and names it.
//!
//! ```text
//! PREPARED ── list the provider's ids, record them (ids_before)
//!          ── issue ── seal the answer, record APPLIED (one write) ── verify ── VERIFIED
//!          ── revoke the slot's replaced secret ── COMMIT
//! ```
//!
//! Crash safety: a secret exists unrecorded only between the provider's answer and the APPLIED
//! write. Resuming a PREPARED attempt lists the ids again; an id that is neither in
//! `ids_before`, nor stored, nor the attempt's own candidate was created by this attempt and is
//! revoked before issuing again (no orphan survives a kill -9). Ids the provider held before the
//! attempt that the store does not know are reported, never deleted: they are someone else's.

use std::collections::HashSet;

use super::backend::LocalBackend;
use super::error::LocalError;
use super::failpoint;
use super::run::{Run, Step, seal_into};
use crate::drivers::{AnyIssuer, DriverErrorKind, LocalDriver};
use crate::rotation::AttemptState;
use crate::store::local::RotationStateStore as _;

// === impl LocalBackend (issued secrets) ===

impl LocalBackend {
    /// Records the provider's ids (first time) or removes what an interrupted run of this
    /// attempt created (resumed), then issues, seals and records APPLIED.
    pub(super) async fn issue(&self, run: &mut Run<'_>, issuer: &AnyIssuer) -> Result<(), Step> {
        let rotation_id = run.row.rotation_id.clone();
        let stored = self
            .store()
            .credentials(&rotation_id)
            .await
            .map_err(LocalError::from)?;
        let stored_ids: HashSet<&str> = stored.iter().filter_map(|c| c.id.as_deref()).collect();
        let held = issuer.list().await?;
        match &run.row.ids_before {
            None => {
                let unknown: Vec<&String> = held
                    .iter()
                    .filter(|id| !stored_ids.contains(id.as_str()))
                    .collect();
                if !unknown.is_empty() {
                    tracing::warn!(%rotation_id, ids = ?unknown,
                        "the provider holds secrets rotator does not manage; they are left alone");
                }
                run.row.ids_before = Some(held);
                self.record(&run.row).await?;
            }
            Some(before) => {
                let orphans: Vec<&String> = held
                    .iter()
                    .filter(|id| {
                        !before.contains(id)
                            && !stored_ids.contains(id.as_str())
                            && run.row.candidate_id.as_ref() != Some(*id)
                    })
                    .collect();
                for id in orphans {
                    tracing::info!(%rotation_id, attempt_id = %run.row.attempt_id, %id,
                        "revoking a secret an interrupted attempt created but never recorded");
                    issuer.revoke(id).await?;
                }
            }
        }
        let replaced = stored
            .iter()
            .find(|c| c.slot == run.row.slot)
            .and_then(|c| c.id.clone());
        let issued = match issuer.issue().await {
            Ok(issued) => issued,
            Err(e) if e.kind() == DriverErrorKind::LimitReached => {
                // No room for a new secret: the slot's replaced one goes first. Only the inactive
                // slot is ever replaced, so the active credential keeps working.
                let Some(replaced) = replaced else {
                    return Err(e.into());
                };
                tracing::info!(%rotation_id, id = %replaced,
                    "the provider's limit is reached; revoking the replaced secret before issuing");
                issuer.revoke(&replaced).await?;
                run.retired = Some(replaced);
                issuer.issue().await?
            }
            Err(e) => return Err(e.into()),
        };
        failpoint::hit("issued").await;
        seal_into(&mut run.row, run.registered, &issued)?;
        run.row.state = AttemptState::Applied;
        run.candidate = Some(issued);
        self.record(&run.row).await?;
        failpoint::hit("applied").await;
        Ok(())
    }

    /// Before COMMIT: revokes the secret the slot held, which the candidate replaces.
    /// Idempotent, so a resumed VERIFIED attempt runs it again.
    pub(super) async fn retire_replaced(&self, run: &Run<'_>) -> Result<(), Step> {
        let LocalDriver::Issued(issuer) = run.driver else {
            return Ok(());
        };
        let stored = self
            .store()
            .credentials(&run.row.rotation_id)
            .await
            .map_err(LocalError::from)?;
        let replaced = stored
            .iter()
            .find(|c| c.slot == run.row.slot)
            .and_then(|c| c.id.as_deref())
            .filter(|id| run.row.candidate_id.as_deref() != Some(*id))
            .filter(|id| run.retired.as_deref() != Some(*id));
        if let Some(id) = replaced {
            issuer.revoke(id).await?;
        }
        Ok(())
    }

    /// When an attempt of an issued secret fails after the provider issued its candidate:
    /// revokes the candidate, so the failure leaves no secret behind. Best effort: a failure
    /// is logged.
    pub(super) async fn withdraw_candidate(&self, run: &Run<'_>) {
        if let (LocalDriver::Issued(issuer), Some(candidate)) = (run.driver, &run.candidate)
            && let Err(error) = issuer.revoke(&candidate.id).await
        {
            tracing::warn!(rotation_id = %run.row.rotation_id, id = %candidate.id, %error,
                "the failed attempt's new secret could not be revoked; remove it by hand");
        }
    }
}
