//! Outbox depth and oldest age: a periodic log line now; the observability work turns the same
//! numbers into metrics by calling [`crate::store::ReadOutbox::backlog`].

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::store::ReadOutbox;

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
