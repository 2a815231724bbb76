//! The outbox table on SQLite. Times are stored as Unix microseconds so that SQL can compare them.

use chrono::{DateTime, Utc};
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use super::SqliteStore;
use crate::store::{
    AckOutbox, Backlog, Delivery, NewOutboxEvent, OutboxEvent, OutboxSeq, ReadOutbox, StoreError,
    WriteOutbox,
};

// === impl SqliteStore: WriteOutbox ===

impl WriteOutbox for SqliteStore {
    async fn append(&self, event: NewOutboxEvent) -> Result<(), StoreError> {
        let trace_headers = serde_json::to_string(&event.trace_headers)
            .map_err(|e| StoreError::Corrupt(format!("trace headers: {e}")))?;
        sqlx::query(
            "INSERT INTO outbox \
             (event_id, subject, payload, rotation_id, trace_headers, request_id, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event.event_id.to_string())
        .bind(event.subject)
        .bind(event.payload)
        .bind(event.rotation_id)
        .bind(trace_headers)
        .bind(event.request_id)
        .bind(event.created_at.timestamp_micros())
        .execute(&self.writer)
        .await
        .map_err(StoreError::query)?;
        Ok(())
    }
}

// === impl SqliteStore: ReadOutbox ===

impl ReadOutbox for SqliteStore {
    async fn next_batch(
        &self,
        from: OutboxSeq,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, event_id, subject, payload, rotation_id, trace_headers, request_id, \
                    created_at, attempts, last_error, sent_at, stream_seq \
             FROM outbox WHERE sent_at IS NULL AND seq >= ? ORDER BY seq LIMIT ?",
        )
        .bind(from)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.reader)
        .await
        .map_err(StoreError::query)?;
        rows.iter().map(decode).collect()
    }

    async fn backlog(&self) -> Result<Backlog, StoreError> {
        // The oldest waiting event is the one with the smallest sequence.
        let row = sqlx::query(
            "SELECT COUNT(*) AS depth, \
                    (SELECT created_at FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT 1) \
                        AS oldest \
             FROM outbox WHERE sent_at IS NULL",
        )
        .fetch_one(&self.reader)
        .await
        .map_err(StoreError::query)?;
        let depth: i64 = row.try_get("depth").map_err(StoreError::query)?;
        let oldest: Option<i64> = row.try_get("oldest").map_err(StoreError::query)?;
        Ok(Backlog {
            depth: u64::try_from(depth).unwrap_or_default(),
            oldest_created_at: oldest.map(from_micros).transpose()?,
        })
    }
}

// === impl SqliteStore: AckOutbox ===

impl AckOutbox for SqliteStore {
    async fn mark_sent(
        &self,
        deliveries: &[Delivery],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        // One statement (and one fsync) for the whole batch: [[seq, stream_seq], ...].
        let pairs: Vec<[i64; 2]> = deliveries
            .iter()
            .map(|d| [d.seq, i64::try_from(d.stream_seq).unwrap_or(i64::MAX)])
            .collect();
        let pairs = serde_json::to_string(&pairs)
            .map_err(|e| StoreError::Corrupt(format!("delivery list: {e}")))?;
        sqlx::query(
            "UPDATE outbox SET sent_at = ?1, stream_seq = d.value ->> 1 \
             FROM json_each(?2) AS d \
             WHERE outbox.seq = d.value ->> 0",
        )
        .bind(at.timestamp_micros())
        .bind(pairs)
        .execute(&self.writer)
        .await
        .map_err(StoreError::query)?;
        Ok(())
    }

    async fn mark_failed(&self, seqs: &[OutboxSeq], error: &str) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let seqs = serde_json::to_string(seqs)
            .map_err(|e| StoreError::Corrupt(format!("sequence list: {e}")))?;
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ? \
             WHERE seq IN (SELECT value FROM json_each(?)) AND sent_at IS NULL",
        )
        .bind(error)
        .bind(seqs)
        .execute(&self.writer)
        .await
        .map_err(StoreError::query)?;
        Ok(())
    }

    async fn prune_delivered(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?")
            .bind(before.timestamp_micros())
            .execute(&self.writer)
            .await
            .map_err(StoreError::query)?;
        Ok(done.rows_affected())
    }
}

fn decode(row: &SqliteRow) -> Result<OutboxEvent, StoreError> {
    let get = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
    let event_id: String = row.try_get("event_id").map_err(get)?;
    let event_id =
        Uuid::parse_str(&event_id).map_err(|e| StoreError::Corrupt(format!("event_id: {e}")))?;
    let trace_headers: String = row.try_get("trace_headers").map_err(get)?;
    let trace_headers = serde_json::from_str(&trace_headers)
        .map_err(|e| StoreError::Corrupt(format!("trace_headers: {e}")))?;
    let attempts: i64 = row.try_get("attempts").map_err(get)?;
    let sent_at: Option<i64> = row.try_get("sent_at").map_err(get)?;
    let stream_seq: Option<i64> = row.try_get("stream_seq").map_err(get)?;
    Ok(OutboxEvent {
        seq: row.try_get("seq").map_err(get)?,
        event: NewOutboxEvent {
            event_id,
            subject: row.try_get("subject").map_err(get)?,
            payload: row.try_get("payload").map_err(get)?,
            rotation_id: row.try_get("rotation_id").map_err(get)?,
            trace_headers,
            request_id: row.try_get("request_id").map_err(get)?,
            created_at: from_micros(row.try_get("created_at").map_err(get)?)?,
        },
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        last_error: row.try_get("last_error").map_err(get)?,
        sent_at: sent_at.map(from_micros).transpose()?,
        stream_seq: stream_seq.and_then(|s| u64::try_from(s).ok()),
    })
}

fn from_micros(micros: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {micros} is out of range")))
}
