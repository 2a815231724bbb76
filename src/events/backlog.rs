//! Outbox depth and oldest age: a periodic log line, and the `rotator.outbox.depth` /
//! `rotator.outbox.oldest_age` gauges (sampled every few seconds, read at each scrape).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::store::{Backlog, ReadOutbox};
use crate::telemetry::metrics::{self, OutboxStats};

/// How often the gauges are refreshed from the store (one small indexed query).
pub const METRICS_SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// Feeds the outbox gauges until `cancel`: samples the backlog every `interval` and registers
/// a metrics source that reports the last sample, with the oldest age computed at scrape time.
pub async fn export_metrics(store: impl ReadOutbox, interval: Duration, cancel: CancellationToken) {
    let last: Arc<Mutex<Option<Backlog>>> = Arc::default();
    let seen = Arc::clone(&last);
    metrics::set_outbox_source(move || {
        let backlog = seen.lock().ok().and_then(|b| *b).unwrap_or_default();
        OutboxStats {
            depth: backlog.depth,
            oldest_age: backlog
                .oldest_created_at
                .map(|_| backlog.oldest_age(Utc::now())),
        }
    });
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = cancel.cancelled() => return,
        }
        match store.backlog().await {
            Ok(backlog) => {
                if let Ok(mut slot) = last.lock() {
                    *slot = Some(backlog);
                }
            }
            Err(error) => tracing::debug!(%error, "cannot sample the outbox backlog for metrics"),
        }
    }
}

/// Logs the backlog every `interval` until `cancel`: at info while events wait (and once when
/// the outbox empties again), at debug while it stays empty.
pub async fn log_periodically(
    store: impl ReadOutbox,
    interval: Duration,
    cancel: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_waiting = false;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = cancel.cancelled() => return,
        }
        match store.backlog().await {
            Ok(backlog) if backlog.depth > 0 => {
                was_waiting = true;
                tracing::info!(
                    outbox_depth = backlog.depth,
                    outbox_oldest_age_seconds = backlog.oldest_age(Utc::now()).as_secs_f64(),
                    "events waiting in the outbox"
                );
            }
            Ok(_) if was_waiting => {
                was_waiting = false;
                tracing::info!(outbox_depth = 0, "events outbox drained");
            }
            Ok(_) => tracing::debug!(outbox_depth = 0, "events outbox empty"),
            Err(error) => tracing::warn!(%error, "cannot read the events outbox backlog"),
        }
    }
}
