//! The relay: publishes outbox rows to JetStream in sequence order and marks each one sent only
//! after its `PublishAck`.
//!
//! - **Batches and waves.** It reads up to `batch_size` unsent rows in `seq` order and splits
//!   them into waves: wave *k* holds the *k*-th event of each rotation in the batch. A whole wave
//!   is sent before any of its acks is awaited (one round trip for many rows); the next wave
//!   starts only once every ack of this one is in, and a failure stops the batch. Because a wave
//!   holds at most one event per rotation, events of one rotation reach the stream in order even
//!   if a reconnect reorders a wave. (Events of different rotations may be published out of
//!   `seq` order; only per-rotation order is promised.)
//! - **Marks off the hot path.** Acknowledged rows go to a marker running beside the publisher,
//!   which writes all pending marks in one transaction (one fsync for many batches). The
//!   publisher moves a read cursor past what it has published, so it never waits for an fsync
//!   and never re-reads rows whose mark is still on its way. The cursor goes back to the start
//!   after any failure and after each idle poll interval, so nothing is ever skipped for long.
//! - **Exactly once in the stream.** Each message carries `Nats-Msg-Id` = event id. A row whose
//!   ack or mark was lost (timeout, crash between publish and mark) is published again and
//!   JetStream drops the copy within the stream's duplicate window; `PublishAck.duplicate` counts
//!   as delivered.
//! - **Never in the way.** It runs in its own task; the gRPC path only appends rows and nudges
//!   it. While NATS is unreachable it retries with jittered exponential backoff.
//! - **Wake-ups are hints.** A [`Notify`] from the recorder starts a pass at once; a poll
//!   interval catches anything a lost wake-up would miss.
//! - **Shutdown** (cancel = wait): the current batch finishes and its acks are recorded, then
//!   the relay keeps draining for a short flush period while NATS answers, then the marker
//!   writes the last marks and both stop. What is left is published at the next start.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::EventsError;
use super::backoff::Backoff;
use super::cloudevent::CONTENT_TYPE;
use super::publisher::{OutgoingMessage, Publisher};
use super::subject;
use crate::store::{AckOutbox, Delivery, OutboxEvent, OutboxSeq, ReadOutbox};
use crate::telemetry;

/// Where the publisher hands acknowledged rows to the marker.
type Marks = mpsc::UnboundedSender<Vec<Delivery>>;

/// The outcome of publishing one batch.
#[derive(Debug, Default)]
struct Sent {
    /// Rows JetStream acknowledged.
    delivered: Vec<Delivery>,
    /// Rows that were tried and not acknowledged.
    failed: Vec<OutboxSeq>,
    /// The first failure.
    error: Option<EventsError>,
    /// Acks that said JetStream already had the message.
    duplicates: usize,
}

/// How a relay behaves.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Prepended to each row's relative subject.
    pub subject_prefix: String,
    /// Most rows in flight at once.
    pub batch_size: usize,
    /// How often to look for rows when nothing woke the relay.
    pub poll_interval: Duration,
    /// How long delivered rows are kept before they are deleted.
    pub retention: Duration,
    /// How often delivered rows past their retention are deleted.
    pub prune_interval: Duration,
    /// Delays between tries while NATS is unreachable.
    pub backoff: Backoff,
    /// How long to keep draining after cancellation while NATS answers.
    pub shutdown_flush: Duration,
}

/// The outbox relay.
#[derive(Debug)]
pub struct Relay<S, P> {
    store: S,
    publisher: P,
    wake: Arc<Notify>,
    options: RelayOptions,
}

/// Keeps the log readable during an outage: one warning when it starts, a reminder a minute,
/// one line when it ends.
#[derive(Debug, Default)]
struct Outage {
    since: Option<Instant>,
    failures: u64,
    last_warned: Option<Instant>,
}

const OUTAGE_REMINDER: Duration = Duration::from_secs(60);

// === impl RelayOptions ===

impl RelayOptions {
    /// Options for the configured prefix and events settings, with the default batch size
    /// (256), backoff (100 ms doubling to 5 s) and shutdown flush (2 s).
    pub fn new(subject_prefix: &str, events: &crate::config::EventsConfig) -> Self {
        Self {
            subject_prefix: subject_prefix.to_owned(),
            batch_size: 256,
            poll_interval: events.relay_poll_interval,
            retention: events.outbox_retention,
            prune_interval: Duration::from_secs(60),
            backoff: default_backoff(),
            shutdown_flush: Duration::from_secs(2),
        }
    }
}

fn default_backoff() -> Backoff {
    match Backoff::new(Duration::from_millis(100), Duration::from_secs(5)) {
        Ok(backoff) => backoff,
        Err(error) => unreachable!("constant backoff bounds are valid: {error}"),
    }
}

// === impl Relay ===

impl<S, P> Relay<S, P>
where
    S: ReadOutbox + AckOutbox,
    P: Publisher,
{
    /// A relay from `store` to `publisher`, woken early by `wake`.
    pub fn new(store: S, publisher: P, wake: Arc<Notify>, options: RelayOptions) -> Self {
        Self {
            store,
            publisher,
            wake,
            options,
        }
    }

    /// Runs until `cancel`, then finishes the current batch, flushes briefly and writes the
    /// last marks.
    pub async fn run(self, cancel: CancellationToken) {
        let (marks, pending) = mpsc::unbounded_channel();
        tokio::join!(self.publish_loop(cancel, marks), self.mark_loop(pending));
        tracing::info!("events relay stopped");
    }

    async fn publish_loop(&self, cancel: CancellationToken, marks: Marks) {
        let mut backoff = self.options.backoff.clone();
        let mut outage = Outage::default();
        let mut ready = false;
        let mut cursor: OutboxSeq = 0;
        let mut next_prune = Instant::now();
        while !cancel.is_cancelled() {
            if !ready {
                let prepared = tokio::select! {
                    result = self.publisher.prepare() => result,
                    () = cancel.cancelled() => break,
                };
                match prepared {
                    Ok(()) => ready = true,
                    Err(error) => {
                        outage.failed(&error);
                        if pause(backoff.next_delay(), &cancel).await {
                            break;
                        }
                        continue;
                    }
                }
            }
            match self.publish_from(&mut cursor, &marks).await {
                Ok(0) => {
                    backoff.reset();
                    outage.recovered();
                    if Instant::now() >= next_prune {
                        self.prune().await;
                        next_prune = Instant::now() + self.options.prune_interval;
                    }
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(self.options.poll_interval) => cursor = 0,
                        () = cancel.cancelled() => break,
                    }
                }
                Ok(_) => {
                    backoff.reset();
                    outage.recovered();
                }
                Err(error) => {
                    cursor = 0;
                    if error.needs_stream() {
                        ready = false;
                    }
                    outage.failed(&error);
                    if pause(backoff.next_delay(), &cancel).await {
                        break;
                    }
                }
            }
        }
        if ready {
            let deadline = Instant::now() + self.options.shutdown_flush;
            while Instant::now() < deadline {
                match self.publish_from(&mut cursor, &marks).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "events left in the outbox at shutdown; they are published at the next start");
                        break;
                    }
                }
            }
        }
    }

    /// Writes marks as they come, coalescing whatever queued up meanwhile into one transaction.
    /// Ends when the publisher is done and every mark is written.
    async fn mark_loop(&self, mut pending: mpsc::UnboundedReceiver<Vec<Delivery>>) {
        while let Some(mut deliveries) = pending.recv().await {
            while let Ok(more) = pending.try_recv() {
                deliveries.extend(more);
            }
            if let Err(error) = self.store.mark_sent(&deliveries, Utc::now()).await {
                // The rows stay unsent: they are published again and de-duplicated.
                tracing::warn!(%error, events = deliveries.len(), "cannot mark delivered events sent");
            }
        }
    }

    /// Publishes one batch and records the outcome of every row in it before returning. Returns
    /// how many rows were delivered; 0 means the outbox was empty.
    ///
    /// # Errors
    ///
    /// The first publish failure (rows acked before or after it are still marked sent), or a
    /// store failure.
    pub async fn publish_batch(&self) -> Result<usize, EventsError> {
        let batch = self.store.next_batch(0, self.options.batch_size).await?;
        let sent = self.publish(&batch).await;
        self.store.mark_sent(&sent.delivered, Utc::now()).await?;
        self.settle(sent).await
    }

    /// Publishes the batch at `cursor`, hands its acks to the marker and moves the cursor past it.
    async fn publish_from(
        &self,
        cursor: &mut OutboxSeq,
        marks: &Marks,
    ) -> Result<usize, EventsError> {
        let batch = self
            .store
            .next_batch(*cursor, self.options.batch_size)
            .await?;
        let sent = self.publish(&batch).await;
        if sent.error.is_none()
            && let Some(last) = batch.last()
        {
            *cursor = last.seq + 1;
        }
        if !sent.delivered.is_empty() {
            // The marker only stops after this loop, so the channel is open.
            let _ = marks.send(sent.delivered.clone());
        }
        self.settle(sent).await
    }

    /// Publishes `batch` wave by wave, stopping at the first failure.
    async fn publish(&self, batch: &[OutboxEvent]) -> Sent {
        let mut sent = Sent::default();
        for wave in waves(batch) {
            self.publish_wave(&wave, &mut sent).await;
            if sent.error.is_some() {
                break;
            }
        }
        if sent.duplicates > 0 {
            tracing::info!(
                duplicates = sent.duplicates,
                "JetStream already held some events (a re-publish); counted as delivered"
            );
        }
        sent
    }

    /// Sends every row of `wave` (stopping at the first send failure), then awaits each ack.
    /// Each message gets a producer span, from send to ack, in its originating call's trace.
    async fn publish_wave(&self, wave: &[&OutboxEvent], sent: &mut Sent) {
        let mut in_flight = Vec::with_capacity(wave.len());
        for row in wave {
            let (message, span) = self.message(row);
            match self.publisher.send(message).instrument(span.clone()).await {
                Ok(ack) => in_flight.push((row, span, ack)),
                Err(error) => {
                    published(row, &span, Err(&error));
                    sent.failed.push(row.seq);
                    sent.error = Some(error);
                    break;
                }
            }
        }
        for (row, span, ack) in in_flight {
            match ack.instrument(span.clone()).await {
                Ok(acked) => {
                    published(row, &span, Ok(()));
                    sent.duplicates += usize::from(acked.duplicate);
                    sent.delivered.push(Delivery {
                        seq: row.seq,
                        stream_seq: acked.stream_seq,
                    });
                }
                Err(error) => {
                    published(row, &span, Err(&error));
                    sent.failed.push(row.seq);
                    sent.error.get_or_insert(error);
                }
            }
        }
    }

    /// Counts the failed attempts, and turns the outcome into the delivered count or the error.
    async fn settle(&self, sent: Sent) -> Result<usize, EventsError> {
        match sent.error {
            None => Ok(sent.delivered.len()),
            Some(error) => {
                self.store
                    .mark_failed(&sent.failed, &error.to_string())
                    .await?;
                Err(error)
            }
        }
    }

    /// The message for `row` and the producer span that publishes it. With a tracer, the trace
    /// headers name the producer span (in the originating call's trace); without one, the
    /// stored headers of the originating call pass through unchanged.
    fn message(&self, row: &OutboxEvent) -> (OutgoingMessage, tracing::Span) {
        let subject = subject::full(&self.options.subject_prefix, &row.event.subject);
        let message_id = row.event.event_id.to_string();
        let span = telemetry::producer_span(
            &subject,
            &message_id,
            &row.event.request_id,
            &row.event.trace_headers,
        );
        let mut trace_headers = telemetry::inject_headers(&span);
        if trace_headers.is_empty() {
            trace_headers.clone_from(&row.event.trace_headers);
        }
        let mut headers = Vec::with_capacity(2 + trace_headers.len());
        headers.push(("content-type".to_owned(), CONTENT_TYPE.to_owned()));
        headers.push(("x-request-id".to_owned(), row.event.request_id.clone()));
        headers.extend(trace_headers);
        let message = OutgoingMessage {
            subject,
            message_id,
            headers,
            payload: row.event.payload.clone(),
        };
        (message, span)
    }

    async fn prune(&self) {
        let Ok(retention) = chrono::Duration::from_std(self.options.retention) else {
            return;
        };
        match self.store.prune_delivered(Utc::now() - retention).await {
            Ok(0) => {}
            Ok(pruned) => tracing::debug!(pruned, "deleted delivered events past their retention"),
            Err(error) => tracing::warn!(%error, "cannot prune delivered events"),
        }
    }
}

/// Records one publish outcome on its span and in the event metrics.
fn published(row: &OutboxEvent, span: &tracing::Span, result: Result<(), &EventsError>) {
    match result {
        Ok(()) => {
            let outcome = match row.event.subject.rsplit('.').next() {
                Some("completed") => "completed",
                Some("failed") => "failed",
                Some("delivered") => "delivered",
                Some("delivery-failed") => "delivery-failed",
                _ => "other",
            };
            telemetry::metrics::event_published(outcome);
        }
        Err(error) => {
            telemetry::record_error(span, error.kind(), &error.to_string());
            telemetry::metrics::publish_failed(error.kind());
        }
    }
}

/// Splits `rows` (in `seq` order) into waves: wave *k* holds the *k*-th row of each rotation,
/// in `seq` order.
fn waves(rows: &[OutboxEvent]) -> Vec<Vec<&OutboxEvent>> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut waves: Vec<Vec<&OutboxEvent>> = Vec::new();
    for row in rows {
        let nth = seen.entry(row.event.rotation_id.as_str()).or_default();
        if waves.len() <= *nth {
            waves.push(Vec::new());
        }
        waves[*nth].push(row);
        *nth += 1;
    }
    waves
}

/// Sleeps for `delay`; true if cancelled first.
async fn pause(delay: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => false,
        () = cancel.cancelled() => true,
    }
}

// === impl Outage ===

impl Outage {
    fn failed(&mut self, error: &EventsError) {
        let now = Instant::now();
        self.failures += 1;
        let since = *self.since.get_or_insert(now);
        let remind = self
            .last_warned
            .is_none_or(|t| now.duration_since(t) >= OUTAGE_REMINDER);
        if remind {
            self.last_warned = Some(now);
            tracing::warn!(
                %error,
                failures = self.failures,
                failing_for_seconds = now.duration_since(since).as_secs(),
                "events relay cannot publish; events wait in the outbox and are retried"
            );
        } else {
            tracing::debug!(%error, failures = self.failures, "events relay retry failed");
        }
    }

    fn recovered(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::info!(
                failures = self.failures,
                failing_for_seconds = since.elapsed().as_secs(),
                "events relay publishing again"
            );
            self.failures = 0;
            self.last_warned = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewOutboxEvent;

    fn row(seq: i64, rotation: &str) -> OutboxEvent {
        OutboxEvent {
            seq,
            event: NewOutboxEvent {
                event_id: uuid::Uuid::now_v7(),
                subject: "x.completed".into(),
                payload: Vec::new(),
                rotation_id: rotation.into(),
                trace_headers: Vec::new(),
                request_id: String::new(),
                created_at: Utc::now(),
            },
            attempts: 0,
            last_error: None,
            sent_at: None,
            stream_seq: None,
        }
    }

    #[test]
    fn a_wave_holds_at_most_one_event_per_rotation_in_seq_order() {
        let rows = vec![
            row(1, "a"),
            row(2, "b"),
            row(3, "a"),
            row(4, "c"),
            row(5, "a"),
        ];
        let seqs: Vec<Vec<i64>> = waves(&rows)
            .iter()
            .map(|w| w.iter().map(|r| r.seq).collect())
            .collect();
        assert_eq!(seqs, [vec![1, 2, 4], vec![3], vec![5]]);
        assert!(waves(&[]).is_empty());
    }
}
