//! The follow-up of a forwarded rotation whose outcome was unknown (`ROTATION_OUTCOME_UNKNOWN`:
//! a deadline, a 504 or a dropped connection after the call may have rotated, and reading back
//! at once could not tell). rotator keeps reading the rotation back in the background, bounded,
//! and once Infisical shows what happened it records a second event stating it, linked to the
//! first by `resolves_event_id`. It never rotates again.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;
use uuid::Uuid;

use crate::events::AttemptRecorder;
use crate::proto::{Backend, RotationType, Trigger};
use crate::rotation::{AttemptRecord, Classify as _};
use crate::upstream::infisical::{Infisical, Outcome, UpstreamError};

/// Waits before each read-back: 2 s doubling, about two minutes in all.
const WAITS: [Duration; 6] = [
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
    Duration::from_secs(32),
    Duration::from_secs(64),
];

/// A forwarded attempt whose outcome is unknown.
pub(super) struct Unknown {
    pub(super) infisical: Arc<Infisical>,
    pub(super) recorder: Arc<dyn AttemptRecorder>,
    pub(super) rotation_type: RotationType,
    pub(super) rotation_id: String,
    /// `lastRotatedAt` before the call.
    pub(super) baseline: prost_types::Timestamp,
    /// The event that said the outcome was unknown.
    pub(super) first_event_id: Uuid,
    pub(super) request_id: String,
}

/// Reads the rotation back until its outcome shows, then records the follow-up event.
pub(super) async fn resolve_unknown_outcome(unknown: Unknown) {
    let started = Instant::now();
    for wait in WAITS {
        tokio::time::sleep(wait).await;
        let outcome = unknown
            .infisical
            .read_outcome(
                unknown.rotation_type,
                &unknown.rotation_id,
                &unknown.request_id,
                unknown.baseline,
            )
            .await;
        let (rotation, failure) = match outcome {
            Outcome::Unknown => continue,
            Outcome::Rotated(rotation) => (Some(*rotation), None),
            Outcome::Failed(failure) => (None, Some(UpstreamError::Http(failure).failure())),
        };
        tracing::info!(rotation_id = %unknown.rotation_id, rotated = rotation.is_some(),
            "the unknown outcome of a forwarded rotation is known now");
        let record = AttemptRecord {
            event_id: Uuid::now_v7(),
            time: Utc::now(),
            rotation_id: unknown.rotation_id.clone(),
            rotation_type: unknown.rotation_type,
            rotation,
            backend: Backend::Forwarded,
            trigger: Trigger::Manual,
            attempt_number: 1,
            duration: started.elapsed(),
            request_id: unknown.request_id.clone(),
            upstream_req_id: None,
            failure,
            resolves_event_id: Some(unknown.first_event_id),
        };
        if let Err(error) = unknown.recorder.record(record).await {
            tracing::error!(%error, "could not record the follow-up event");
        }
        return;
    }
    tracing::warn!(rotation_id = %unknown.rotation_id,
        "the outcome of a forwarded rotation is still unknown after two minutes of reading back");
}
