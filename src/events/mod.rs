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

pub mod backlog;
pub mod backoff;
pub mod cloudevent;
mod error;
pub mod jetstream;
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
            None => tracing::info!(
                "no NATS configured (nats.url): rotation events are kept in the outbox until it is"
            ),
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
