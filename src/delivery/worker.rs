//! The delivery worker: one background task per process that brings every sink up to its
//! rotation's committed version.
//!
//! A pass reads the lagging rows whose next try is due, and for each (in parallel across
//! sinks, one at a time per sink) reads the committed credential and its version in one
//! statement, delivers that version, and records the outcome with its event in one
//! transaction. A row is marked only upward, so a slow try of an old version can never
//! overwrite the record of a newer one. Failures wait with jittered backoff (1 s doubling to
//! 5 min), kept in the row so a restart keeps it too.
//!
//! Wake-ups: a commit of a rotation with sinks and a reload (hints), the next due retry, and a
//! scan every [`SCAN_PERIOD`]. Each creates the rows of configured sinks that have none (added
//! by a reload, or configured after the last commit). Stopping aborts the task; a try cut off
//! is owed still and made again by the next start.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{Payload, SinkContext, deliver, kind_name};
use crate::config::registry::LocalRotation;
use crate::config::sinks::SinkSpec;
use crate::events::backoff::Backoff;
use crate::events::cloudevent::CloudEvent;
use crate::events::model::RotationEvent;
use crate::events::redact::redact_message;
use crate::events::subject;
use crate::local::LocalBackend;
use crate::proto::{CredentialDelivered, CredentialDeliveryFailed, DeliveryAttempt};
use crate::store::NewOutboxEvent;
use crate::store::deliveries::{DeliveryRow, DeliveryStore as _, FailedDelivery};

/// How often the worker looks for owed deliveries when nothing woke it.
pub const SCAN_PERIOD: Duration = Duration::from_secs(30);
/// The shortest wait between passes.
const MIN_WAIT: Duration = Duration::from_millis(20);
/// The first retry delay of a failing sink.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest retry delay.
const MAX_RETRY: Duration = Duration::from_secs(300);

/// The running worker; [`Delivery::stop`] (or drop) aborts it.
#[derive(Debug)]
pub struct Delivery {
    task: JoinHandle<()>,
}

/// One owed delivery, with what it needs.
struct Owed {
    row: DeliveryRow,
    rotation: LocalRotation,
    sink: SinkSpec,
}

// === impl Delivery ===

impl Delivery {
    /// Spawns the worker over `backend`: a scan now, then on each commit, each due retry and
    /// every [`SCAN_PERIOD`].
    pub fn spawn(backend: Arc<LocalBackend>) -> Self {
        Self::spawn_with(backend, SinkContext::default())
    }

    /// [`Delivery::spawn`] with the clients sinks share (the service's Infisical client).
    pub fn spawn_with(backend: Arc<LocalBackend>, context: SinkContext) -> Self {
        let wake = backend.delivery_signal();
        let task = tokio::spawn(async move {
            let mut next_scan = tokio::time::Instant::now() + SCAN_PERIOD;
            loop {
                // Every wake-up (start, commit, reload, scan) records sinks that have no row:
                // an insert that finds its row writes nothing.
                if let Err(error) = ensure_rows(&backend).await {
                    tracing::warn!(%error, "delivery could not record the configured sinks");
                }
                if tokio::time::Instant::now() >= next_scan {
                    next_scan = tokio::time::Instant::now() + SCAN_PERIOD;
                }
                if let Err(error) = pass(&backend, &context).await {
                    tracing::warn!(%error, "delivery could not read the owed deliveries");
                }
                let to_scan = next_scan.saturating_duration_since(tokio::time::Instant::now());
                let wait = match backend.shared_store().next_delivery_at().await {
                    Ok(Some(at)) => until(at).min(to_scan),
                    _ => to_scan,
                }
                // A row that stays due (its try could not even be recorded) is not spun on.
                .max(MIN_WAIT);
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                }
            }
        });
        Self { task }
    }

    /// Stops the task.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn until(at: DateTime<Utc>) -> Duration {
    (at - Utc::now()).to_std().unwrap_or(Duration::ZERO)
}

/// Creates the row of every configured sink that has none (added by a reload, or configured
/// after the rotation's last commit), owing the current version.
async fn ensure_rows(backend: &LocalBackend) -> Result<(), crate::store::StoreError> {
    let current = backend.current();
    for rotation in &current.registry.rotations {
        for sink in rotation.sinks() {
            backend
                .shared_store()
                .ensure_delivery(&rotation.id.to_string(), &sink.name, Utc::now())
                .await?;
        }
    }
    Ok(())
}

/// Tries every due delivery once. A sink of no registered rotation (removed by a reload) is
/// put off like a failure, without an event: a reload may bring it back.
async fn pass(
    backend: &LocalBackend,
    context: &SinkContext,
) -> Result<(), crate::store::StoreError> {
    let rows = backend.shared_store().due_deliveries(Utc::now()).await?;
    if rows.is_empty() {
        return Ok(());
    }
    let current = backend.current();
    let mut owed = Vec::new();
    for row in rows {
        let registered = Uuid::parse_str(&row.rotation_id)
            .ok()
            .and_then(|id| current.registry.rotation(id))
            .and_then(|r| Some((r, r.sinks().iter().find(|s| s.name == row.sink)?)));
        match registered {
            Some((rotation, sink)) => owed.push(Owed {
                sink: sink.clone(),
                rotation: rotation.clone(),
                row,
            }),
            None => {
                put_off(
                    backend,
                    &row,
                    row.wanted_version,
                    "the sink is not configured".into(),
                    None,
                )
                .await?;
            }
        }
    }
    futures::future::join_all(owed.iter().map(|o| try_one(backend, o, context))).await;
    Ok(())
}

/// Records a failed try of `version` with its backoff (and `event`, if any).
async fn put_off(
    backend: &LocalBackend,
    row: &DeliveryRow,
    version: u64,
    error: String,
    event: Option<NewOutboxEvent>,
) -> Result<Duration, crate::store::StoreError> {
    let now = Utc::now();
    let delay = retry_backoff().after(row.failures).next_delay();
    backend
        .shared_store()
        .mark_failed(&FailedDelivery {
            rotation_id: row.rotation_id.clone(),
            sink: row.sink.clone(),
            version,
            error,
            at: now,
            next_try_at: now + chrono::Duration::from_std(delay).unwrap_or_default(),
            event,
        })
        .await?;
    Ok(delay)
}

/// One try of the committed version to one sink, recorded with its event.
async fn try_one(backend: &LocalBackend, owed: &Owed, context: &SinkContext) {
    let Owed {
        row,
        rotation,
        sink,
    } = owed;
    let current = backend.current();
    let committed = match backend.committed_values(&current, rotation).await {
        Ok(Some(committed)) if committed.version > row.delivered_version => committed,
        Ok(_) => return,
        Err(error) => {
            // No value in a LocalError; retried with backoff like a sink's failure.
            tracing::warn!(rotation_id = %row.rotation_id, sink = %row.sink, %error,
                "delivery could not read the committed credential");
            let message = format!("cannot read the committed credential: {error}");
            if let Err(error) = put_off(backend, row, row.wanted_version, message, None).await {
                tracing::warn!(%error, "could not record a delivery outcome");
            }
            return;
        }
    };
    let payload = Payload {
        rotation_id: &row.rotation_id,
        version: committed.version,
        values: &committed.values,
    };
    let outcome = deliver(sink, &payload, context).await;
    crate::telemetry::metrics::delivery_tried(
        kind_name(sink),
        if outcome.is_ok() {
            "delivered"
        } else {
            "failed"
        },
    );
    let now = Utc::now();
    let since_commit = committed
        .committed_at
        .and_then(|at| (now - at).to_std().ok())
        .unwrap_or_default();
    let attempt = DeliveryAttempt {
        event_id: Uuid::now_v7().to_string(),
        time: Some(timestamp(now)),
        rotation_id: row.rotation_id.clone(),
        r#type: rotation.rotation_type as i32,
        name: Some(rotation.name.clone()),
        sink: sink.name.clone(),
        sink_kind: kind_name(sink).to_owned(),
        version: committed.version,
        since_commit: prost_types::Duration::try_from(since_commit).ok(),
        attempt_number: row.failures + 1,
    };
    let store = backend.shared_store();
    let recorded: Result<(), crate::store::StoreError> = match outcome {
        Ok(()) => {
            let event = RotationEvent::Delivered(CredentialDelivered {
                delivery: Some(attempt),
            });
            match outbox_row(&event, now) {
                Ok(event) => {
                    tracing::info!(rotation_id = %row.rotation_id, sink = %sink.name,
                        version = committed.version, "delivered");
                    store
                        .mark_delivered(
                            &row.rotation_id,
                            &sink.name,
                            committed.version,
                            now,
                            &event,
                        )
                        .await
                        .map(|_| ())
                }
                Err(error) => {
                    tracing::warn!(%error, "could not encode a delivery event");
                    return;
                }
            }
        }
        Err(error) => {
            let known: Vec<&str> = committed.values.iter().map(|(_, v)| v.expose()).collect();
            let message = redact_message(&error.to_string(), &known);
            // One event per version and sink: the first failure. Later ones show in the status.
            let event = (row.failures == 0)
                .then(|| {
                    outbox_row(
                        &RotationEvent::DeliveryFailed(CredentialDeliveryFailed {
                            delivery: Some(attempt),
                            message: message.clone(),
                        }),
                        now,
                    )
                })
                .transpose();
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    tracing::warn!(%error, "could not encode a delivery event");
                    None
                }
            };
            match put_off(backend, row, committed.version, message.clone(), event).await {
                Ok(delay) => {
                    tracing::warn!(rotation_id = %row.rotation_id, sink = %sink.name,
                        version = committed.version, error = %message,
                        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        "delivery failed; it is retried");
                    Ok(())
                }
                Err(error) => Err(error),
            }
        }
    };
    if let Err(error) = recorded {
        tracing::warn!(rotation_id = %row.rotation_id, sink = %sink.name, %error,
            "could not record a delivery outcome; it is tried again");
    }
}

fn retry_backoff() -> Backoff {
    match Backoff::new(FIRST_RETRY, MAX_RETRY) {
        Ok(backoff) => backoff,
        Err(error) => unreachable!("constant backoff bounds are valid: {error}"),
    }
}

fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or_default(),
    }
}

/// The outbox row of a delivery event.
fn outbox_row(
    event: &RotationEvent,
    time: DateTime<Utc>,
) -> Result<NewOutboxEvent, crate::events::EventsError> {
    let (event_id, rotation_id, _) = event
        .ids()
        .ok_or_else(|| crate::events::EventsError::Encode("no delivery".into()))?;
    let event_id =
        Uuid::parse_str(event_id).map_err(|e| crate::events::EventsError::Encode(e.to_string()))?;
    let payload = CloudEvent::encode(event, time, &[])?;
    Ok(NewOutboxEvent {
        event_id,
        subject: subject::relative(event.rotation_type(), event.outcome()),
        payload,
        rotation_id: rotation_id.to_owned(),
        trace_headers: Vec::new(),
        request_id: String::new(),
        created_at: time,
    })
}
