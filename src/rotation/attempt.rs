//! One rotation attempt as the rest of the service sees it: where a local attempt stands
//! ([`AttemptState`]) and the record of its outcome ([`AttemptRecord`]) that events and metrics
//! are built from. Never holds a secret.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::failure::Failure;
use crate::proto::{Backend, RotationType, SecretRotation, Trigger};

/// Where a local attempt stands; stored with the attempt (DESIGN §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptState {
    /// Intent committed: the target slot and, for a chosen secret, the sealed candidate.
    Prepared,
    /// The target has (or may have) the candidate; for an issued secret, the provider's answer
    /// (its key id and secret) is sealed in the store.
    Applied,
    /// A fresh login with the candidate succeeded.
    Verified,
    /// Slot updated, active index flipped, outbox event written. Final.
    Committed,
    /// Gave up; the stored credentials are unchanged. Final.
    Failed,
}

/// The outcome of one rotation attempt, as recorded for events.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// Unique id of the event; also its de-duplication id.
    pub event_id: Uuid,
    /// When the attempt ended.
    pub time: DateTime<Utc>,
    /// The rotation.
    pub rotation_id: String,
    /// The rotation's type.
    pub rotation_type: RotationType,
    /// The rotation as it stands after the attempt, where known.
    pub rotation: Option<SecretRotation>,
    /// Which backend served it.
    pub backend: Backend,
    /// What started it.
    pub trigger: Trigger,
    /// 1 for the first attempt of a run.
    pub attempt_number: u32,
    /// How long the attempt took.
    pub duration: Duration,
    /// Our request id.
    pub request_id: String,
    /// Infisical's `reqId`, when there was one.
    pub upstream_req_id: Option<String>,
    /// The failure, if the attempt failed.
    pub failure: Option<Failure>,
    /// On the follow-up of an attempt whose outcome was unknown: that attempt's event id.
    pub resolves_event_id: Option<Uuid>,
}
