//! Confirmed handover (docs/delivery.md, "Confirmed handover"): a rotation may name consumers
//! that confirm the committed version they now use (`ConfirmCredentialInUse`). An attempt that
//! would replace a stored credential first asks [`decide`]: it goes ahead when every named
//! consumer confirmed the committed version, or once `handover_grace_seconds` have passed since
//! that version's commit (then a `CredentialHandoverTimedOut` event, once per version, and
//! `rotator_handover_grace_expired_total`); otherwise it is refused with `HANDOVER_PENDING`
//! before anything is stored, so a scheduled rotation stays due and the scheduler tries again.
//! Rotations without consumers never get here.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::backend::{LocalBackend, Origin};
use super::error::LocalError;
use crate::config::registry::LocalRotation;
use crate::events::cloudevent::CloudEvent;
use crate::events::model::RotationEvent;
use crate::events::subject;
use crate::proto::{
    ConfirmCredentialInUseResponse, ConsumerConfirmation, CredentialHandoverComplete,
    CredentialHandoverTimedOut, HandoverAttempt,
};
use crate::store::NewOutboxEvent;
use crate::store::handover::{Confirm, Confirmed, HandoverState, HandoverStore as _};

/// What the next rotation of a rotation with consumers may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Gate {
    /// Every named consumer confirmed the committed version (or none is named).
    Open,
    /// Some have not, and the grace runs until `grace_ends_at`.
    Wait {
        /// Those that have not confirmed.
        unconfirmed: Vec<String>,
        /// When the grace ends.
        grace_ends_at: DateTime<Utc>,
    },
    /// Some have not, and the grace has ended: the rotation goes ahead and says so.
    Expired {
        /// Those that have not confirmed.
        unconfirmed: Vec<String>,
    },
}

/// The named consumers that have not confirmed the committed version of `state`, in
/// configuration order.
pub(super) fn unconfirmed(named: &[String], state: &HandoverState) -> Vec<String> {
    named
        .iter()
        .filter(|name| {
            !state
                .confirmations
                .iter()
                .any(|c| &c.consumer == *name && c.version >= state.version)
        })
        .cloned()
        .collect()
}

/// The handover rule, as a pure decision. A committed version without a commit time (not
/// written by any COMMIT) never holds a rotation back.
pub(super) fn decide(
    named: &[String],
    state: &HandoverState,
    grace: Duration,
    now: DateTime<Utc>,
) -> Gate {
    let unconfirmed = unconfirmed(named, state);
    if unconfirmed.is_empty() {
        return Gate::Open;
    }
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    match state
        .committed_at
        .and_then(|at| at.checked_add_signed(grace))
    {
        Some(grace_ends_at) if now < grace_ends_at => Gate::Wait {
            unconfirmed,
            grace_ends_at,
        },
        _ => Gate::Expired { unconfirmed },
    }
}

// === impl LocalBackend (handover) ===

impl LocalBackend {
    /// Before an attempt that would replace a stored credential of `rotation`: `Ok` to go
    /// ahead, [`LocalError::HandoverPending`] while named consumers have not confirmed the
    /// committed version and its grace runs. When the grace has ended, records the timeout
    /// (event and metric, once per version) and goes ahead.
    pub(super) async fn handover_gate(
        &self,
        rotation: &LocalRotation,
        origin: &Origin,
    ) -> Result<(), LocalError> {
        if rotation.consumers().is_empty() {
            return Ok(());
        }
        let rotation_id = rotation.id.to_string();
        let state = self.store().handover_state(&rotation_id).await?;
        let now = Utc::now();
        match decide(rotation.consumers(), &state, rotation.handover_grace(), now) {
            Gate::Open => Ok(()),
            Gate::Wait {
                unconfirmed,
                grace_ends_at,
            } => Err(LocalError::HandoverPending {
                rotation_id,
                version: state.version,
                unconfirmed,
                grace_ends_at,
            }),
            Gate::Expired { unconfirmed } => {
                let event = RotationEvent::HandoverTimedOut(CredentialHandoverTimedOut {
                    handover: Some(attempt(
                        rotation,
                        state.version,
                        state.committed_at,
                        &origin.request_id,
                        now,
                    )),
                    unconfirmed_consumers: unconfirmed.clone(),
                    grace: prost_types::Duration::try_from(rotation.handover_grace()).ok(),
                });
                let row = outbox_row(&event, now)?;
                if self
                    .store()
                    .record_timeout(&rotation_id, state.version, now, &row)
                    .await?
                {
                    crate::telemetry::metrics::handover_grace_expired(
                        rotation.rotation_type.slug().unwrap_or("unspecified"),
                    );
                    tracing::warn!(%rotation_id, version = state.version,
                        unconfirmed = %unconfirmed.join(","),
                        "handover grace ended before every consumer confirmed; rotating anyway");
                }
                Ok(())
            }
        }
    }

    /// Records that `consumer` uses the committed `version` of `rotation`. Idempotent; when it
    /// is the last named consumer to confirm, appends `CredentialHandoverComplete` in the same
    /// transaction.
    ///
    /// # Errors
    ///
    /// [`LocalError::ConsumerNotNamed`], [`LocalError::VersionNotCurrent`], or the store's.
    pub async fn confirm(
        &self,
        rotation: &LocalRotation,
        consumer: &str,
        version: u64,
        request_id: &str,
    ) -> Result<ConfirmCredentialInUseResponse, LocalError> {
        let rotation_id = rotation.id.to_string();
        if !rotation.consumers().iter().any(|c| c == consumer) {
            return Err(LocalError::ConsumerNotNamed {
                rotation_id,
                consumer: consumer.to_owned(),
                named: rotation.consumers().to_vec(),
            });
        }
        // The store keeps milliseconds: the first answer says what a repeated one will.
        let now = Utc::now();
        let now = DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
        let before = self.store().handover_state(&rotation_id).await?;
        let complete = outbox_row(
            &RotationEvent::HandoverComplete(CredentialHandoverComplete {
                handover: Some(attempt(
                    rotation,
                    version,
                    before.committed_at,
                    request_id,
                    now,
                )),
            }),
            now,
        )?;
        let outcome = self
            .store()
            .confirm(&Confirm {
                rotation_id: &rotation_id,
                consumer,
                version,
                at: now,
                named: rotation.consumers(),
                complete_event: Some(&complete),
            })
            .await?;
        let confirmed_at = match outcome {
            Confirmed::NotCurrent { current } => {
                return Err(LocalError::VersionNotCurrent {
                    rotation_id,
                    version,
                    current,
                });
            }
            Confirmed::Already { confirmed_at } => confirmed_at,
            Confirmed::Recorded {
                confirmed_at,
                complete,
            } => {
                tracing::info!(%rotation_id, consumer, version, "consumer confirmed the credential in use");
                if complete {
                    tracing::info!(%rotation_id, version, "every consumer confirmed: handover complete");
                }
                confirmed_at
            }
        };
        let after = self.store().handover_state(&rotation_id).await?;
        Ok(ConfirmCredentialInUseResponse {
            confirmation: Some(ConsumerConfirmation {
                consumer: consumer.to_owned(),
                confirmed_version: version,
                confirmed_at: Some(timestamp(confirmed_at)),
                current: after.version == version,
            }),
            unconfirmed_consumers: unconfirmed(rotation.consumers(), &after),
        })
    }

    /// The committed version of `rotation` and one confirmation per named consumer, in
    /// configuration order, as `GetSecretRotation` shows them.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn confirmations(
        &self,
        rotation: &LocalRotation,
    ) -> Result<(u64, Vec<ConsumerConfirmation>), LocalError> {
        let state = self
            .store()
            .handover_state(&rotation.id.to_string())
            .await?;
        let confirmations = rotation
            .consumers()
            .iter()
            .map(
                |name| match state.confirmations.iter().find(|c| &c.consumer == name) {
                    Some(c) => ConsumerConfirmation {
                        consumer: name.clone(),
                        confirmed_version: c.version,
                        confirmed_at: Some(timestamp(c.confirmed_at)),
                        current: c.version >= state.version,
                    },
                    None => ConsumerConfirmation {
                        consumer: name.clone(),
                        ..ConsumerConfirmation::default()
                    },
                },
            )
            .collect();
        Ok((state.version, confirmations))
    }
}

/// The rotation and version a handover event is about.
fn attempt(
    rotation: &LocalRotation,
    version: u64,
    committed_at: Option<DateTime<Utc>>,
    request_id: &str,
    now: DateTime<Utc>,
) -> HandoverAttempt {
    HandoverAttempt {
        event_id: Uuid::now_v7().to_string(),
        time: Some(timestamp(now)),
        rotation_id: rotation.id.to_string(),
        r#type: rotation.rotation_type as i32,
        name: Some(rotation.name.clone()),
        version,
        since_commit: committed_at
            .and_then(|at| (now - at).to_std().ok())
            .and_then(|d| prost_types::Duration::try_from(d).ok()),
        request_id: request_id.to_owned(),
    }
}

fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or_default(),
    }
}

/// The outbox row of a handover event, with the current call's trace context.
fn outbox_row(event: &RotationEvent, time: DateTime<Utc>) -> Result<NewOutboxEvent, LocalError> {
    let encode = |e: String| LocalError::Event(crate::events::EventsError::Encode(e));
    let (event_id, rotation_id, request_id) =
        event.ids().ok_or_else(|| encode("no handover".into()))?;
    let event_id = Uuid::parse_str(event_id).map_err(|e| encode(e.to_string()))?;
    let trace_headers = crate::telemetry::current_trace_headers();
    let payload = CloudEvent::encode(event, time, &trace_headers).map_err(LocalError::Event)?;
    Ok(NewOutboxEvent {
        event_id,
        subject: subject::relative(event.rotation_type(), event.outcome()),
        payload,
        rotation_id: rotation_id.to_owned(),
        trace_headers,
        request_id: request_id.to_owned(),
        created_at: time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::handover::ConfirmationRow;

    fn state(
        version: u64,
        committed_at: DateTime<Utc>,
        confirmed: &[(&str, u64)],
    ) -> HandoverState {
        HandoverState {
            version,
            committed_at: Some(committed_at),
            confirmations: confirmed
                .iter()
                .map(|(consumer, version)| ConfirmationRow {
                    consumer: (*consumer).to_owned(),
                    version: *version,
                    confirmed_at: committed_at,
                })
                .collect(),
        }
    }

    #[test]
    fn the_next_rotation_waits_for_every_consumer_or_the_grace() {
        let named = vec!["billing-api".to_owned(), "worker".to_owned()];
        let committed = Utc::now();
        let grace = Duration::from_secs(3600);
        let during = committed + chrono::Duration::seconds(60);
        let after = committed + chrono::Duration::seconds(3600);

        assert_eq!(
            decide(&[], &state(2, committed, &[]), grace, during),
            Gate::Open,
            "no consumers: as without handover"
        );
        assert_eq!(
            decide(
                &named,
                &state(2, committed, &[("billing-api", 1)]),
                grace,
                during
            ),
            Gate::Wait {
                unconfirmed: named.clone(),
                grace_ends_at: committed + chrono::Duration::seconds(3600),
            },
            "a confirmation of the previous version does not count"
        );
        assert_eq!(
            decide(&named, &state(2, committed, &[("worker", 2)]), grace, after),
            Gate::Expired {
                unconfirmed: vec!["billing-api".to_owned()]
            },
            "the grace ends at committed_at + grace"
        );
        assert_eq!(
            decide(
                &named,
                &state(
                    2,
                    committed,
                    &[("worker", 2), ("billing-api", 2), ("gone", 1)]
                ),
                grace,
                during
            ),
            Gate::Open
        );
        let unknown_time = HandoverState {
            committed_at: None,
            ..state(2, committed, &[])
        };
        assert!(matches!(
            decide(&named, &unknown_time, grace, during),
            Gate::Expired { .. }
        ));
    }
}
