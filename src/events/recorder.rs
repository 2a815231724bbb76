//! The outbox recorder: turns each attempt into its event and appends it to the outbox, durably,
//! before the engine lets the caller's answer go. Then it nudges the relay.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::Utc;
use tokio::sync::Notify;

use super::EventsError;
use super::cloudevent::CloudEvent;
use super::model::{RotationEvent, trace_id_of};
use super::subject;
use crate::rotation::AttemptRecord;
use crate::store::{NewOutboxEvent, WriteOutbox};

/// Where the engine's attempt records go; the outbox recorder implements it.
pub trait AttemptRecorder: Send + Sync + fmt::Debug {
    /// Durably records an attempt before the caller is answered.
    ///
    /// # Errors
    ///
    /// The event could not be encoded or written.
    fn record(
        &self,
        attempt: AttemptRecord,
    ) -> Pin<Box<dyn Future<Output = Result<(), EventsError>> + Send + '_>>;
}

/// Records attempts as outbox rows.
pub struct OutboxRecorder<S> {
    store: S,
    /// Wakes the relay. A hint only: the relay also polls, so a lost wake-up delays an event by
    /// at most one poll interval and never loses it.
    wake: Arc<Notify>,
}

// === impl OutboxRecorder ===

impl<S: WriteOutbox> OutboxRecorder<S> {
    /// A recorder writing to `store` and waking the relay through `wake`.
    pub fn new(store: S, wake: Arc<Notify>) -> Self {
        Self { store, wake }
    }

    /// Builds the attempt's event and appends it. The trace context is that of the current span.
    ///
    /// # Errors
    ///
    /// The event could not be encoded or the store could not write it.
    pub async fn record_attempt(&self, attempt: &AttemptRecord) -> Result<(), EventsError> {
        let row = outbox_row(attempt, crate::telemetry::current_trace_headers())?;
        crate::store::in_transaction_span(
            self.store.system(),
            "append outbox event",
            self.store.append(row),
        )
        .await?;
        self.wake.notify_one();
        Ok(())
    }
}

/// The outbox row of one attempt.
///
/// # Errors
///
/// [`EventsError::Encode`] if the event cannot be encoded.
pub fn outbox_row(
    attempt: &AttemptRecord,
    trace_headers: Vec<(String, String)>,
) -> Result<NewOutboxEvent, EventsError> {
    let event = RotationEvent::from_attempt(attempt, trace_id_of(&trace_headers));
    let payload = CloudEvent::encode(&event, attempt.time, &trace_headers)?;
    Ok(NewOutboxEvent {
        event_id: attempt.event_id,
        subject: subject::relative(attempt.rotation_type, event.outcome()),
        payload,
        rotation_id: attempt.rotation_id.clone(),
        trace_headers,
        request_id: attempt.request_id.clone(),
        created_at: Utc::now(),
    })
}

impl<S: WriteOutbox + 'static> AttemptRecorder for OutboxRecorder<S> {
    fn record(
        &self,
        attempt: AttemptRecord,
    ) -> Pin<Box<dyn Future<Output = Result<(), EventsError>> + Send + '_>> {
        Box::pin(async move { self.record_attempt(&attempt).await })
    }
}

impl<S> fmt::Debug for OutboxRecorder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxRecorder").finish_non_exhaustive()
    }
}
