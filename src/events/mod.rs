//! Rotation events: `RotationCompleted` / `RotationFailed` on NATS JetStream, through a
//! transactional outbox, never lost and never doubled.
//!
//! # Layout
//!
//! In data-flow order:
//! - [`model`]: the event of one [`AttemptRecord`](crate::rotation::AttemptRecord), with the
//!   attempt's classified [`Failure`](crate::rotation::Failure).
//! - [`redact`]: scrubbing and capping failure messages.
//! - [`cloudevent`]: the CloudEvents 1.0 structured JSON message, `data` in proto3 JSON.
//! - [`subject`]: subjects `PREFIX.<type-slug>.<completed|failed>`.
//! - [`recorder`]: appends the event to the outbox before the caller is answered.
//! - [`relay`]: publishes the outbox in order, ack-gated, with backoff; [`publisher`] is what it
//!   needs from a broker, [`jetstream`] the NATS implementation; [`backoff`] its delays.
//! - [`backlog`]: the periodic depth / oldest-age log line and gauges.
//!
//! [`EventsPipeline`] starts all of it for a server.

mod attempt_json;
pub mod backlog;
pub mod backoff;
pub mod cloudevent;
mod error;
pub mod jetstream;
mod leadership;
pub mod model;
pub mod publisher;
pub mod recorder;
pub mod redact;
pub mod relay;
pub mod subject;

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::error::EventsError;
pub use self::recorder::{AttemptRecorder, OutboxRecorder};
pub use self::relay::{Relay, RelayOptions};
use crate::config::Config;
use crate::store::{Backlog, OutboxStore, StoreError};

/// How often, at most, the outbox is trimmed when events arrive without NATS: appends wake
/// it, and one delete per interval covers them all.
const DISCARD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// How often the outbox is trimmed when nothing woke the trimmer.
const DISCARD_POLL: std::time::Duration = std::time::Duration::from_secs(10);

/// With no NATS configured, keeps the outbox at the newest `cap` unpublished events: woken by
/// recorded attempts or every [`DISCARD_POLL`], at most once per [`DISCARD_INTERVAL`]. Each deleted event is counted in
/// `rotator.events.discarded`; a store error is logged and tried again at the next wake.
async fn discard_beyond_cap<S: OutboxStore>(
    store: S,
    cap: u64,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    loop {
        match store.discard_unpublished_beyond(cap).await {
            Ok(0) => {}
            Ok(n) => {
                crate::telemetry::metrics::events_discarded(n);
                tracing::warn!(
                    discarded = n,
                    unpublished_cap = cap,
                    "no NATS configured: deleted the oldest unpublished events beyond the cap"
                );
            }
            Err(error) => tracing::warn!(error = %error, "could not trim the unpublished events"),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = wake.notified() => {}
            // Local commits write their events without a wake-up.
            () = tokio::time::sleep(DISCARD_POLL) => {}
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(DISCARD_INTERVAL) => {}
        }
    }
}

/// The running events pipeline of a server: the recorder the engine calls, the relay task and
/// the backlog log task.
///
/// Tasks: relay (cancel = wait for its current batch's acks, then a short flush; error = log
/// and retry forever), backlog log and backlog gauges (cancel = abort; error = log).
#[derive(Debug)]
pub struct EventsPipeline<S> {
    store: S,
    wake: Arc<Notify>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

// === impl EventsPipeline ===

impl<S> EventsPipeline<S>
where
    S: OutboxStore + Clone + 'static,
{
    /// Spawns the relay (when NATS is configured) and the backlog log. Never waits for NATS:
    /// with NATS unreachable or not configured, events wait in the outbox.
    pub fn start(config: &Config, store: S) -> Self {
        let wake = Arc::new(Notify::new());
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(backlog::log_periodically(
            store.clone(),
            config.events.backlog_log_interval,
            cancel.child_token(),
        ));
        tasks.spawn(backlog::export_metrics(
            store.clone(),
            backlog::METRICS_SAMPLE_INTERVAL,
            cancel.child_token(),
        ));
        match &config.nats {
            Some(nats) => {
                crate::telemetry::health::report(
                    crate::telemetry::health::NATS,
                    "connecting",
                    None,
                );
                let relay = Relay::new(
                    store.clone(),
                    jetstream::JetStreamPublisher::new(nats.clone()),
                    Arc::clone(&wake),
                    RelayOptions::new(&nats.subject_prefix, &config.events),
                );
                tasks.spawn(relay.run(cancel.child_token()));
            }
            None => {
                let cap = config.events.unpublished_cap_without_nats;
                tracing::warn!(
                    unpublished_cap = cap,
                    "no NATS configured (nats.url): rotation events are not published; the \
                     outbox keeps the newest events.unpublished_cap_without_nats of them for a \
                     NATS configured later, and deletes older ones"
                );
                crate::telemetry::health::report(
                    crate::telemetry::health::NATS,
                    "not_configured",
                    None,
                );
                tasks.spawn(discard_beyond_cap(
                    store.clone(),
                    cap,
                    Arc::clone(&wake),
                    cancel.child_token(),
                ));
            }
        }
        tasks.close();
        Self {
            store,
            wake,
            cancel,
            tasks,
        }
    }

    /// The recorder the engine reports forwarded attempts to.
    pub fn recorder(&self) -> Arc<dyn AttemptRecorder> {
        Arc::new(OutboxRecorder::new(
            self.store.clone(),
            Arc::clone(&self.wake),
        ))
    }

    /// Outbox depth and oldest age, for health and metrics.
    ///
    /// # Errors
    ///
    /// The store could not be read.
    pub async fn backlog(&self) -> Result<Backlog, StoreError> {
        self.store.backlog().await
    }

    /// Stops the tasks: the relay finishes its current batch and flushes briefly.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tasks.wait().await;
    }
}
