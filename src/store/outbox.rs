//! The outbox table on [`Store`]. Times are Unix microseconds so that SQL can compare them.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::db::{Backend, Columns, on_db};
use super::{
    AckOutbox, Backlog, Delivery, NewOutboxEvent, OutboxEvent, OutboxSeq, ReadOutbox, Store,
    StoreError, WriteOutbox,
};

/// The advisory lock key that serializes outbox appends on PostgreSQL ("rotator" in ASCII).
pub(crate) const OUTBOX_LOCK: i64 = 0x0072_6f74_6174_6f72;

/// Appends `event` through `$exec`, an open transaction (`&mut *tx`). On PostgreSQL it first
/// takes the outbox advisory lock, held until the transaction ends, so a row's `seq` is
/// allocated and made visible in commit order: the relay's cursor (`seq >= from`) can then
/// never pass a row that another transaction has yet to commit. SQLite's single writer gives
/// the same order.
macro_rules! append_in {
    ($exec:expr, $postgres:expr, $event:expr) => {
        $crate::store::outbox::append_many_in!($exec, $postgres, std::iter::once($event))
    };
}
pub(crate) use append_in;

/// Appends every event of `$events` (an iterator of `&NewOutboxEvent`, at least one) through
/// `$exec` in one statement, in the iterator's order, under the same lock as [`append_in!`].
macro_rules! append_many_in {
    ($exec:expr, $postgres:expr, $events:expr) => {
        async {
            if $postgres {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind($crate::store::outbox::OUTBOX_LOCK)
                    .execute($exec)
                    .await
                    .map_err(StoreError::query)?;
            }
            let mut rows = Vec::new();
            for event in $events {
                let event: &$crate::store::NewOutboxEvent = event;
                let trace_headers = serde_json::to_string(&event.trace_headers)
                    .map_err(|e| StoreError::Corrupt(format!("trace headers: {e}")))?;
                rows.push((event, trace_headers));
            }
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO outbox \
                 (event_id, subject, payload, rotation_id, trace_headers, request_id, created_at) ",
            );
            insert.push_values(&rows, |mut row, (event, trace_headers)| {
                row.push_bind(event.event_id.to_string())
                    .push_bind(event.subject.clone())
                    .push_bind(event.payload.clone())
                    .push_bind(event.rotation_id.clone())
                    .push_bind(trace_headers.clone())
                    .push_bind(event.request_id.clone())
                    .push_bind(event.created_at.timestamp_micros());
            });
            insert.push(" ON CONFLICT (event_id) DO NOTHING");
            insert
                .build()
                .execute($exec)
                .await
                .map_err(StoreError::query)?;
            Ok::<(), StoreError>(())
        }
    };
}
pub(crate) use append_many_in;

/// Marks `$deliveries` sent at `$at` inside the open transaction `$tx`.
macro_rules! mark_sent_in {
    ($tx:expr, $deliveries:expr, $at:expr) => {
        async {
            let at: chrono::DateTime<chrono::Utc> = $at;
            for delivery in $deliveries {
                sqlx::query("UPDATE outbox SET sent_at = $1, stream_seq = $2 WHERE seq = $3")
                    .bind(at.timestamp_micros())
                    .bind(i64::try_from(delivery.stream_seq).unwrap_or(i64::MAX))
                    .bind(delivery.seq)
                    .execute(&mut *$tx)
                    .await
                    .map_err(StoreError::query)?;
            }
            Ok::<(), StoreError>(())
        }
    };
}
pub(crate) use mark_sent_in;

// === impl Store: WriteOutbox ===

impl WriteOutbox for Store {
    fn system(&self) -> &'static str {
        Store::system(self)
    }

    async fn append(&self, event: NewOutboxEvent) -> Result<(), StoreError> {
        // SQLite: group commit (`group_commit.rs`). PostgreSQL keeps a transaction per append:
        // its advisory lock orders `seq` across replicas, and its server commits concurrent
        // transactions' WAL flushes together anyway.
        if let Backend::Sqlite { appender, .. } = &self.backend {
            return appender.append(event).await;
        }
        on_db!(self, |writer, reader, postgres| {
            let mut tx = writer.begin().await.map_err(StoreError::query)?;
            append_in!(&mut *tx, postgres, &event).await?;
            tx.commit().await.map_err(StoreError::query)
        })
    }
}

// === impl Store: ReadOutbox ===

impl ReadOutbox for Store {
    async fn next_batch(
        &self,
        from: OutboxSeq,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        on_db!(self, |writer, reader, postgres| {
            let rows = sqlx::query(
                "SELECT seq, event_id, subject, payload, rotation_id, trace_headers, request_id, \
                        created_at, attempts, last_error, sent_at, stream_seq \
                 FROM outbox WHERE sent_at IS NULL AND seq >= $1 ORDER BY seq LIMIT $2",
            )
            .bind(from)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(reader)
            .await
            .map_err(StoreError::query)?;
            rows.iter().map(decode).collect()
        })
    }

    async fn backlog(&self) -> Result<Backlog, StoreError> {
        on_db!(self, |writer, reader, postgres| {
            // The oldest waiting event is the one with the smallest sequence.
            let row = sqlx::query(
                "SELECT COUNT(*) AS depth, \
                        (SELECT created_at FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT 1) \
                            AS oldest \
                 FROM outbox WHERE sent_at IS NULL",
            )
            .fetch_one(reader)
            .await
            .map_err(StoreError::query)?;
            Ok(Backlog {
                depth: u64::try_from(row.int("depth")?).unwrap_or_default(),
                oldest_created_at: row.opt_int("oldest")?.map(from_micros).transpose()?,
            })
        })
    }
}

// === impl Store: AckOutbox ===

impl AckOutbox for Store {
    async fn mark_sent(
        &self,
        deliveries: &[Delivery],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        // One transaction (one fsync, one commit) for the whole batch.
        on_db!(self, |writer, reader, postgres| {
            let mut tx = writer.begin().await.map_err(StoreError::query)?;
            mark_sent_in!(tx, deliveries, at).await?;
            tx.commit().await.map_err(StoreError::query)
        })
    }

    async fn mark_failed(&self, seqs: &[OutboxSeq], error: &str) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        on_db!(self, |writer, reader, postgres| {
            let mut tx = writer.begin().await.map_err(StoreError::query)?;
            for seq in seqs {
                sqlx::query(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = $1 \
                     WHERE seq = $2 AND sent_at IS NULL",
                )
                .bind(error)
                .bind(*seq)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query)?;
            }
            tx.commit().await.map_err(StoreError::query)
        })
    }

    async fn prune_delivered(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        on_db!(self, |writer, reader, postgres| {
            let done = sqlx::query("DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < $1")
                .bind(before.timestamp_micros())
                .execute(writer)
                .await
                .map_err(StoreError::query)?;
            Ok(done.rows_affected())
        })
    }

    async fn discard_unpublished_beyond(&self, keep: u64) -> Result<u64, StoreError> {
        on_db!(self, |writer, reader, postgres| {
            // The newest `keep` unsent rows stay; with fewer, the subquery is NULL and nothing
            // matches.
            let done = sqlx::query(
                "DELETE FROM outbox WHERE sent_at IS NULL AND seq <= \
                 (SELECT seq FROM outbox WHERE sent_at IS NULL ORDER BY seq DESC LIMIT 1 OFFSET $1)",
            )
            .bind(i64::try_from(keep).unwrap_or(i64::MAX))
            .execute(writer)
            .await
            .map_err(StoreError::query)?;
            Ok(done.rows_affected())
        })
    }
}

fn decode(row: &impl Columns) -> Result<OutboxEvent, StoreError> {
    let event_id = Uuid::parse_str(&row.text("event_id")?)
        .map_err(|e| StoreError::Corrupt(format!("event_id: {e}")))?;
    let trace_headers = serde_json::from_str(&row.text("trace_headers")?)
        .map_err(|e| StoreError::Corrupt(format!("trace_headers: {e}")))?;
    Ok(OutboxEvent {
        seq: row.int("seq")?,
        event: NewOutboxEvent {
            event_id,
            subject: row.text("subject")?,
            payload: row.bytes("payload")?,
            rotation_id: row.text("rotation_id")?,
            trace_headers,
            request_id: row.text("request_id")?,
            created_at: from_micros(row.int("created_at")?)?,
        },
        attempts: u32::try_from(row.int("attempts")?).unwrap_or(u32::MAX),
        last_error: row.opt_text("last_error")?,
        sent_at: row.opt_int("sent_at")?.map(from_micros).transpose()?,
        stream_seq: row
            .opt_int("stream_seq")?
            .and_then(|s| u64::try_from(s).ok()),
    })
}

fn from_micros(micros: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {micros} is out of range")))
}
