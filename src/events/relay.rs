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
//! - **One relay at a time.** Replicas sharing a store publish only while they hold the relay
//!   lease ([`leadership`](super::leadership)); marks are fenced by the lease's token, and the
//!   relay stops sending once its lease would have expired.
//! - **Exactly once in the stream.** Each message carries `Nats-Msg-Id` = event id. A new leader
//!   (or a restarted one) first reads the stream after the highest sequence ever marked sent and
//!   marks the rows it finds there, so what a crashed or deposed leader published without
//!   marking is never published again, however long NATS or the store was away. A row whose ack
//!   was lost while this relay leads is published again and JetStream drops the copy within the
//!   stream's duplicate window; `PublishAck.duplicate` counts as delivered.
//! - **Never in the way.** It runs in its own task; the gRPC path only appends rows and nudges
//!   it. While NATS is unreachable it retries with jittered exponential backoff.
//! - **Wake-ups are hints.** A [`Notify`] from the recorder starts a pass at once; a poll
//!   interval catches anything a lost wake-up would miss.
//! - **Shutdown** (cancel = wait): the current batch finishes and its acks are recorded, then
//!   the relay keeps draining for a short flush period while NATS answers, then the marker
//!   writes the last marks and both stop, and the relay lease is given up so another replica
//!   takes over at once. What is left is published by the next leader.

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
use super::leadership::{Leadership, Term};
use super::publisher::{OutgoingMessage, Publisher};
use super::subject;
use crate::store::{
    AckOutbox, Delivery, OutboxEvent, OutboxSeq, ReadOutbox, RelayLease, StoreError,
};
use crate::telemetry;

/// Where the publisher hands acknowledged rows, with the term's token, to the marker.
type Marks = mpsc::UnboundedSender<(i64, Vec<Delivery>)>;

/// Most stream messages a new leader reads to find its predecessor's unmarked events: far more
/// than one relay ever has in flight.
const RECONCILE_LIMIT: usize = 4096;

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
    /// The relay lease ran out before the batch was done; the rest was not sent.
    lapsed: bool,
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
    /// This replica's name in the relay lease.
    pub holder: String,
    /// How long the relay lease lasts past each claim or renewal.
    pub lease_ttl: Duration,
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

/// Since when NATS has failed this relay without a success in between.
#[derive(Debug, Default)]
struct BrokerOutage {
    since: Option<Instant>,
}

// === impl RelayOptions ===

impl RelayOptions {
    /// Options for the configured prefix and events settings, with the default batch size
    /// (256), backoff (100 ms doubling to 5 s) and shutdown flush (2 s). The lease holder is
    /// named after the host, the process and a random suffix.
    pub fn new(subject_prefix: &str, events: &crate::config::EventsConfig) -> Self {
        Self {
            subject_prefix: subject_prefix.to_owned(),
            batch_size: 256,
            poll_interval: events.relay_poll_interval,
            retention: events.outbox_retention,
            prune_interval: Duration::from_secs(60),
            backoff: default_backoff(),
            shutdown_flush: Duration::from_secs(2),
            holder: holder_name(),
            lease_ttl: events.relay_lease_ttl,
        }
    }
}

/// `host:pid:random`: unique per process, readable in the lease row.
fn holder_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "rotator".to_owned());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &suffix[..8])
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
    S: ReadOutbox + AckOutbox + RelayLease,
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
        let mut leadership = Leadership::new(self.options.holder.clone(), self.options.lease_ttl);
        tokio::join!(
            self.publish_loop(cancel, marks, &mut leadership),
            self.mark_loop(pending)
        );
        if let Some(token) = leadership.step_down()
            && let Err(error) = self.store.release_relay(token).await
        {
            tracing::warn!(%error, "cannot give up the relay lease; another replica takes it when it expires");
        }
        tracing::info!("events relay stopped");
    }

    async fn publish_loop(
        &self,
        cancel: CancellationToken,
        marks: Marks,
        leadership: &mut Leadership,
    ) {
        let mut backoff = self.options.backoff.clone();
        let mut outage = Outage::default();
        let mut ready = false;
        let mut cursor: OutboxSeq = 0;
        let mut next_prune = Instant::now();
        let mut broker = BrokerOutage::default();
        let mut claim_after = Instant::now();
        while !cancel.is_cancelled() {
            // A leader that has not reached NATS for a whole lease TTL hands the lease over, so
            // a replica that can publish takes over instead of the outbox waiting for this one.
            // It waits half a TTL before claiming again: the others try every third.
            if broker.lasted(self.options.lease_ttl) && self.hand_over(leadership).await {
                ready = false;
                claim_after = Instant::now() + self.options.lease_ttl / 2;
            }
            // The lease first, whatever NATS does: a leader keeps its term (or learns it lost
            // it) even while it cannot publish. A follower claims only once NATS answered it.
            let may_claim = ready && Instant::now() >= claim_after;
            let term = if may_claim || leadership.current().is_some() {
                match leadership.ensure(&self.store).await {
                    Ok(term) => term,
                    Err(error) => {
                        cursor = 0;
                        outage.failed(&EventsError::Store(error));
                        if pause(backoff.next_delay(), &cancel).await {
                            break;
                        }
                        continue;
                    }
                }
            } else {
                None
            };
            // Followers connect too: NATS health is reported, and a takeover starts at once.
            if !ready {
                let prepared = tokio::select! {
                    result = self.publisher.prepare() => result,
                    () = cancel.cancelled() => break,
                };
                match prepared {
                    Ok(()) => {
                        ready = true;
                        broker.recovered();
                        if term.is_none() && Instant::now() >= claim_after {
                            // Claim at once, now that this replica can publish.
                            continue;
                        }
                    }
                    Err(error) => {
                        broker.failed(&error);
                        outage.failed(&error);
                        let delay = backoff.next_delay().min(leadership.renew_interval());
                        if pause(delay, &cancel).await {
                            break;
                        }
                        continue;
                    }
                }
            }
            let Some(term) = term else {
                // Another replica leads: try again when its lease may have run out.
                cursor = 0;
                if pause(leadership.renew_interval(), &cancel).await {
                    break;
                }
                continue;
            };
            if !term.reconciled {
                match self.reconcile(&term).await {
                    Ok(()) => leadership.reconciled(),
                    Err(error) => {
                        broker.failed(&error);
                        outage.failed(&error);
                        let delay = backoff.next_delay().min(leadership.renew_interval());
                        if pause(delay, &cancel).await {
                            break;
                        }
                        continue;
                    }
                }
            }
            match self.publish_from(&mut cursor, &marks, &term).await {
                Ok(0) => {
                    backoff.reset();
                    outage.recovered();
                    broker.recovered();
                    if Instant::now() >= next_prune {
                        self.prune().await;
                        next_prune = Instant::now() + self.options.prune_interval;
                    }
                    // Wake up in time to renew the lease, too.
                    let idle = self.options.poll_interval.min(leadership.renew_interval());
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(idle) => cursor = 0,
                        () = cancel.cancelled() => break,
                    }
                }
                Ok(_) => {
                    backoff.reset();
                    outage.recovered();
                    broker.recovered();
                }
                Err(error) => {
                    cursor = 0;
                    if error.needs_stream() {
                        ready = false;
                    }
                    broker.failed(&error);
                    outage.failed(&error);
                    // Back off, but not past the next renewal of the lease.
                    let delay = backoff.next_delay().min(leadership.renew_interval());
                    if pause(delay, &cancel).await {
                        break;
                    }
                }
            }
        }
        if ready && let Some(term) = leadership.current() {
            let deadline = Instant::now() + self.options.shutdown_flush;
            while Instant::now() < deadline {
                match self.publish_from(&mut cursor, &marks, &term).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "events left in the outbox at shutdown; they are published by the next leader");
                        break;
                    }
                }
            }
        }
    }

    /// Gives up the relay lease, if this relay holds it, so that a replica that reaches NATS
    /// claims it at its next try; this one claims again only once NATS answers it. Returns
    /// whether it held the lease.
    async fn hand_over(&self, leadership: &mut Leadership) -> bool {
        let Some(token) = leadership.step_down() else {
            return false;
        };
        tracing::warn!(
            token,
            "this relay cannot reach NATS for a whole relay lease; it hands the lease over to \
             a replica that can"
        );
        if let Err(error) = self.store.release_relay(token).await {
            tracing::warn!(%error, "cannot give up the relay lease; another replica takes it when it expires");
        }
        true
    }

    /// Marks the rows the stream already holds after the term's marked sequence: events a
    /// crashed or deposed leader published and never marked.
    async fn reconcile(&self, term: &Term) -> Result<(), EventsError> {
        let stored = self
            .publisher
            .stored_since(term.term.marked_stream_seq, RECONCILE_LIMIT)
            .await?;
        if stored.is_empty() {
            return Ok(());
        }
        let in_stream: HashMap<&str, u64> = stored
            .iter()
            .map(|s| (s.message_id.as_str(), s.stream_seq))
            .collect();
        let mut found = Vec::new();
        let mut from: OutboxSeq = 0;
        loop {
            let batch = self.store.next_batch(from, self.options.batch_size).await?;
            let Some(last) = batch.last() else { break };
            from = last.seq + 1;
            for row in &batch {
                if let Some(stream_seq) = in_stream.get(row.event.event_id.to_string().as_str()) {
                    found.push(Delivery {
                        seq: row.seq,
                        stream_seq: *stream_seq,
                    });
                }
            }
        }
        if !found.is_empty() {
            tracing::info!(
                events = found.len(),
                "events published by the previous relay leader but not marked sent: marked now"
            );
        }
        self.store
            .mark_sent_in_term(term.term.token, &found, Utc::now())
            .await?;
        Ok(())
    }

    /// Writes marks as they come, coalescing whatever queued up meanwhile (of the same term)
    /// into one transaction. Ends when the publisher is done and every mark is written.
    async fn mark_loop(&self, mut pending: mpsc::UnboundedReceiver<(i64, Vec<Delivery>)>) {
        let mut next = pending.recv().await;
        while let Some((token, mut deliveries)) = next.take() {
            while let Ok((more_token, more)) = pending.try_recv() {
                if more_token == token {
                    deliveries.extend(more);
                } else {
                    next = Some((more_token, more));
                    break;
                }
            }
            match self
                .store
                .mark_sent_in_term(token, &deliveries, Utc::now())
                .await
            {
                Ok(()) => {}
                Err(StoreError::LostLease) => tracing::warn!(
                    events = deliveries.len(),
                    "delivered events not marked: another replica's relay leads now and finds \
                     them in the stream"
                ),
                // The rows stay unsent: they are published again and de-duplicated.
                Err(error) => {
                    tracing::warn!(%error, events = deliveries.len(), "cannot mark delivered events sent");
                }
            }
            if next.is_none() {
                next = pending.recv().await;
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
        let sent = self.publish(&batch, None).await;
        self.store.mark_sent(&sent.delivered, Utc::now()).await?;
        self.settle(sent).await
    }

    /// Publishes the batch at `cursor`, hands its acks to the marker and moves the cursor past it.
    async fn publish_from(
        &self,
        cursor: &mut OutboxSeq,
        marks: &Marks,
        term: &Term,
    ) -> Result<usize, EventsError> {
        let batch = self
            .store
            .next_batch(*cursor, self.options.batch_size)
            .await?;
        let sent = self.publish(&batch, Some(term.valid_until)).await;
        if sent.error.is_none()
            && !sent.lapsed
            && let Some(last) = batch.last()
        {
            *cursor = last.seq + 1;
        }
        if !sent.delivered.is_empty() {
            // The marker only stops after this loop, so the channel is open.
            let _ = marks.send((term.term.token, sent.delivered.clone()));
        }
        if sent.lapsed && sent.error.is_none() {
            // Renewed (or handed over) at the next pass; a lapse is not an empty outbox.
            return Ok(sent.delivered.len().max(1));
        }
        self.settle(sent).await
    }

    /// Publishes `batch` wave by wave, stopping at the first failure, and before any wave once
    /// `until` (the end of the relay lease) has passed.
    async fn publish(&self, batch: &[OutboxEvent], until: Option<Instant>) -> Sent {
        let mut sent = Sent::default();
        for wave in waves(batch) {
            if until.is_some_and(|until| Instant::now() >= until) {
                sent.lapsed = true;
                break;
            }
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
                Some("handover-timed-out") => "handover-timed-out",
                Some("handover-complete") => "handover-complete",
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

// === impl BrokerOutage ===

impl BrokerOutage {
    fn failed(&mut self, error: &EventsError) {
        if error.is_broker() {
            self.since.get_or_insert_with(Instant::now);
        }
    }

    fn recovered(&mut self) {
        self.since = None;
    }

    /// Whether NATS has been failing for at least `bound`; restarts the count when it has.
    fn lasted(&mut self, bound: Duration) -> bool {
        let lasted = self.since.is_some_and(|since| since.elapsed() >= bound);
        if lasted {
            self.since = None;
        }
        lasted
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
