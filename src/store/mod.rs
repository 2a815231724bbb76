//! The store: small per-table traits, and [`Store`], which keeps them on SQLite (embedded, the
//! default) or PostgreSQL (shared by replicas).
//!
//! Each trait names one table and one role, so a component asks only for what it uses (the
//! recorder appends, the relay reads and acknowledges, local rotation takes leases and records
//! attempts). The outbox traits are here, the local-rotation ones in [`local`]; [`db`] opens
//! the backends, and `outbox.rs` / `local_tables.rs` implement the traits once for both.

pub mod db;
pub mod deliveries;
pub mod error;
mod group_commit;
pub mod handover;
pub mod local;
mod local_batch;
mod local_tables;
mod outbox;
mod relay_lease;
mod write_group;

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use self::db::Store;
pub use self::error::StoreError;
pub use self::local_batch::BatchRow;
pub use self::local_tables::LEASE_TTL;

/// Runs one store transaction of a call inside its span (`telemetry::store_transaction_span`),
/// marking the span failed with the error's kind. `system` is the store's `db.system.name`.
///
/// # Errors
///
/// `work`'s error, unchanged.
pub async fn in_transaction_span<T>(
    system: &'static str,
    operation: &'static str,
    work: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    use tracing::Instrument as _;
    let span = crate::telemetry::store_transaction_span(system, operation);
    let result = work.instrument(span.clone()).await;
    if let Err(error) = &result {
        crate::telemetry::record_error(&span, error.kind(), &error.to_string());
    }
    result
}

/// The position of an outbox row. Monotonic and never reused: a later row has a larger number.
pub type OutboxSeq = i64;

/// An event to put in the outbox. Never holds a secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxEvent {
    /// UUIDv7; the CloudEvents `id` and the `Nats-Msg-Id`, so a re-publish is de-duplicated.
    pub event_id: Uuid,
    /// The subject below the configured prefix, e.g. `postgres-credentials.completed`. The prefix
    /// is added at publish time, so changing it never strands queued events.
    pub subject: String,
    /// The message body exactly as it will be published (CloudEvents structured JSON).
    pub payload: Vec<u8>,
    /// The rotation the event is about; events of one rotation are published in order.
    pub rotation_id: String,
    /// W3C trace context (`traceparent`, `tracestate`) of the originating call.
    pub trace_headers: Vec<(String, String)>,
    /// rotator's request id of the originating call.
    pub request_id: String,
    /// When the event was written.
    pub created_at: DateTime<Utc>,
}

/// An outbox row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// The row's position.
    pub seq: OutboxSeq,
    /// What was appended.
    pub event: NewOutboxEvent,
    /// Publish attempts that did not end in an ack.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When JetStream acknowledged it; `None` while it waits.
    pub sent_at: Option<DateTime<Utc>>,
    /// The stream sequence of the acknowledged message.
    pub stream_seq: Option<u64>,
}

/// One acknowledged publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The outbox row.
    pub seq: OutboxSeq,
    /// The stream sequence in the `PublishAck` (the original one when it was a duplicate).
    pub stream_seq: u64,
}

/// How far the relay is behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Events not yet acknowledged by JetStream.
    pub depth: u64,
    /// When the oldest waiting event was written.
    pub oldest_created_at: Option<DateTime<Utc>>,
}

// === impl Backlog ===

impl Backlog {
    /// How long the oldest waiting event has waited, as of `now`; zero when nothing waits.
    pub fn oldest_age(&self, now: DateTime<Utc>) -> Duration {
        self.oldest_created_at
            .and_then(|t| (now - t).to_std().ok())
            .unwrap_or_default()
    }
}

/// Appends events to the outbox.
pub trait WriteOutbox: Send + Sync {
    /// `db.system.name` of the database behind it, for the spans of its transactions.
    fn system(&self) -> &'static str;

    /// Durably appends `event`: when this returns `Ok`, the event survives a crash. Appending an
    /// event id that is already stored is a no-op, so a retried append cannot double an event.
    ///
    /// # Errors
    ///
    /// The store could not write.
    fn append(&self, event: NewOutboxEvent) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Reads what waits in the outbox.
pub trait ReadOutbox: Send + Sync {
    /// The next batch to publish: up to `limit` unsent events with `seq >= from`, in sequence
    /// order.
    ///
    /// # Errors
    ///
    /// The store could not read, or a row is malformed.
    fn next_batch(
        &self,
        from: OutboxSeq,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxEvent>, StoreError>> + Send;

    /// Depth and oldest age of the unsent events.
    ///
    /// # Errors
    ///
    /// The store could not read.
    fn backlog(&self) -> impl Future<Output = Result<Backlog, StoreError>> + Send;
}

/// Records publish outcomes, and forgets delivered events after their retention.
pub trait AckOutbox: Send + Sync {
    /// Marks events sent. Call only after their JetStream `PublishAck`.
    ///
    /// # Errors
    ///
    /// The store could not write; the events are then published again (and de-duplicated).
    fn mark_sent(
        &self,
        deliveries: &[Delivery],
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Counts a failed publish attempt and keeps its (secret-free) reason.
    ///
    /// # Errors
    ///
    /// The store could not write.
    fn mark_failed(
        &self,
        seqs: &[OutboxSeq],
        error: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes events delivered before `before`; returns how many.
    ///
    /// # Errors
    ///
    /// The store could not write.
    fn prune_delivered(
        &self,
        before: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Deletes every unsent event but the newest `keep`; returns how many. For a server with no
    /// NATS configured only: with a relay, an unsent event is one still to be published.
    ///
    /// # Errors
    ///
    /// The store could not write.
    fn discard_unpublished_beyond(
        &self,
        keep: u64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// One term of relay leadership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayTerm {
    /// The fencing token: larger than every earlier term's. Marks of an older term are refused.
    pub token: i64,
    /// The highest stream sequence any leader marked sent: events a predecessor published and
    /// never marked are in the stream after it.
    pub marked_stream_seq: u64,
}

/// The relay lease: which replica's relay publishes the outbox, with a fencing token, so a
/// deposed leader can never move the outbox on.
pub trait RelayLease: Send + Sync {
    /// Takes the lease for `holder` for `ttl` when it is free, expired or already `holder`'s
    /// (a new term each time); `None` while another holder's lease runs. A store only this
    /// process uses (SQLite) has no other holder: the lease is always taken.
    ///
    /// # Errors
    ///
    /// The store could not write.
    fn claim_relay(
        &self,
        holder: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<RelayTerm>, StoreError>> + Send;

    /// Extends the lease of term `token` by `ttl` from now.
    ///
    /// # Errors
    ///
    /// [`StoreError::LostLease`] when another term took it; or the store could not write.
    fn renew_relay(
        &self,
        token: i64,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Gives the lease up if term `token` still holds it, so a successor need not wait for it
    /// to expire.
    ///
    /// # Errors
    ///
    /// The store could not write.
    fn release_relay(&self, token: i64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// [`AckOutbox::mark_sent`] fenced by term `token`, in one transaction that also raises the
    /// lease's marked stream sequence.
    ///
    /// # Errors
    ///
    /// [`StoreError::LostLease`] when another term holds the lease (nothing was written); or the
    /// store could not write.
    fn mark_sent_in_term(
        &self,
        token: i64,
        deliveries: &[Delivery],
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Everything the events pipeline needs from a store.
pub trait OutboxStore: WriteOutbox + ReadOutbox + AckOutbox + RelayLease {}

impl<T: WriteOutbox + ReadOutbox + AckOutbox + RelayLease> OutboxStore for T {}

/// The contract every outbox backend must keep; each backend's tests call it.
#[cfg(test)]
pub(crate) mod contract {
    use super::*;

    fn event(n: u32, rotation: &str) -> NewOutboxEvent {
        NewOutboxEvent {
            event_id: Uuid::now_v7(),
            subject: "postgres-credentials.completed".to_owned(),
            payload: format!("{{\"n\":{n}}}").into_bytes(),
            rotation_id: rotation.to_owned(),
            trace_headers: vec![(
                "traceparent".to_owned(),
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
            )],
            request_id: format!("req-{n}"),
            // Backends may keep microseconds only.
            created_at: DateTime::from_timestamp_micros(Utc::now().timestamp_micros())
                .expect("now is in range"),
        }
    }

    /// Append, read in order, acknowledge, fail, prune, and idempotent append.
    pub(crate) async fn outbox_contract(store: &impl OutboxStore) {
        assert_eq!(store.backlog().await.expect("backlog"), Backlog::default());
        let first = event(1, "r1");
        store.append(first.clone()).await.expect("append");
        store
            .append(first.clone())
            .await
            .expect("append is idempotent");
        for n in 2..=5 {
            store
                .append(event(n, &format!("r{n}")))
                .await
                .expect("append");
        }
        let unsent = store.next_batch(0, 10).await.expect("next batch");
        assert_eq!(unsent.len(), 5, "the repeated event id is stored once");
        assert_eq!(unsent[0].event, first, "a row reads back as written");
        assert!(unsent.windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!(store.next_batch(0, 2).await.expect("batch").len(), 2);
        let from_third = store.next_batch(unsent[2].seq, 10).await.expect("batch");
        assert_eq!(from_third.first().map(|e| e.seq), Some(unsent[2].seq));
        assert_eq!(from_third.len(), 3);

        let backlog = store.backlog().await.expect("backlog");
        assert_eq!(backlog.depth, 5);
        assert_eq!(backlog.oldest_created_at, Some(first.created_at));

        store
            .mark_failed(&[unsent[0].seq, unsent[1].seq], "nats: timed out")
            .await
            .expect("mark failed");
        let again = store.next_batch(0, 1).await.expect("batch");
        assert_eq!(again[0].attempts, 1);
        assert_eq!(again[0].last_error.as_deref(), Some("nats: timed out"));

        let at = Utc::now();
        let deliveries = [
            Delivery {
                seq: unsent[0].seq,
                stream_seq: 7,
            },
            Delivery {
                seq: unsent[2].seq,
                stream_seq: 8,
            },
        ];
        store.mark_sent(&deliveries, at).await.expect("mark sent");
        let left: Vec<_> = store
            .next_batch(0, 10)
            .await
            .expect("batch")
            .into_iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(left, [unsent[1].seq, unsent[3].seq, unsent[4].seq]);
        assert_eq!(store.backlog().await.expect("backlog").depth, 3);

        let before = at - chrono::Duration::seconds(1);
        assert_eq!(store.prune_delivered(before).await.expect("prune"), 0);
        let after = at + chrono::Duration::seconds(1);
        assert_eq!(store.prune_delivered(after).await.expect("prune"), 2);
        assert_eq!(store.backlog().await.expect("backlog").depth, 3);

        // A sequence number is never reused, even after its row is pruned.
        store.append(event(6, "r3")).await.expect("append");
        store.append(event(7, "r4")).await.expect("append");
        let batch = store.next_batch(0, 10).await.expect("batch");
        let max_before = unsent.iter().map(|e| e.seq).max().unwrap_or_default();
        assert!(batch.last().map(|e| e.seq).unwrap_or_default() > max_before);
        let rotations: Vec<_> = batch.iter().map(|e| e.event.rotation_id.as_str()).collect();
        assert_eq!(rotations, ["r2", "r4", "r5", "r3", "r4"]);

        // Without NATS only the newest unsent events stay.
        let discard = |keep| store.discard_unpublished_beyond(keep);
        assert_eq!(discard(5).await.expect("discard"), 0);
        assert_eq!(discard(2).await.expect("discard"), 3);
        let kept = store.next_batch(0, 10).await.expect("batch");
        let rotations: Vec<_> = kept.iter().map(|e| e.event.rotation_id.as_str()).collect();
        assert_eq!(rotations, ["r3", "r4"], "the newest two stay");
        assert_eq!(discard(0).await.expect("discard"), 2);
        assert_eq!(store.backlog().await.expect("backlog").depth, 0);
    }
}
