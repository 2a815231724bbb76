//! Group commit for SQLite outbox appends.
//!
//! Every forwarded call appends one outbox row and may answer its caller only once the row is
//! on disk. Written one by one, each append is a transaction of its own: BEGIN, INSERT and
//! COMMIT, three round trips to sqlx's SQLite worker thread, then a WAL fsync. Under load that
//! was most of a forwarded call's CPU (thread switches and channel work) and its fsyncs queued
//! one behind another.
//!
//! Here one writer task takes every append waiting at that moment (up to [`MAX_BATCH`]) and
//! writes them as one multi-row `INSERT`: one statement in autocommit mode, so one transaction,
//! one round trip to the worker thread and one fsync for the whole group. Each caller's future
//! resolves only after that commit returned, so an answered call's event survives a crash
//! exactly as before. Rows get their `seq` in the order the appends reached the task, and
//! SQLite's single writer makes that the commit order the relay's cursor relies on.
//!
//! If the group's statement fails, each row is retried alone, so every caller gets the outcome
//! of its own row (a broken row cannot fail its neighbours, and none is written twice: the
//! failed statement wrote nothing, and `ON CONFLICT (event_id) DO NOTHING` holds anyway).

use std::sync::OnceLock;

use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot};
use tracing::instrument::WithSubscriber as _;

use super::{NewOutboxEvent, StoreError};

/// The most rows one statement writes (7 parameters each, far below SQLite's 32,766).
pub(crate) const MAX_BATCH: usize = 64;

/// Appends that may wait for the writer task before senders wait for room.
const QUEUE: usize = 4 * MAX_BATCH;

/// The handle callers append through. Cheap to clone; the writer task ends when the last clone
/// is dropped.
#[derive(Debug, Clone)]
pub(crate) struct OutboxAppender {
    queue: mpsc::Sender<Pending>,
}

/// One append waiting for its group's commit.
struct Pending {
    row: NewOutboxEvent,
    done: oneshot::Sender<Result<(), StoreError>>,
}

// === impl OutboxAppender ===

impl OutboxAppender {
    /// Starts the writer task on the current tokio runtime, writing through `writer` (the store's
    /// one-connection write pool, which other writes share between groups).
    pub(crate) fn spawn(writer: SqlitePool) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE);
        // No subscriber: sqlx's worker thread would otherwise keep a caller's span alive, and
        // its own events are not wanted (see `on_db!`).
        tokio::spawn(write_groups(writer, pending).with_subscriber(tracing::Dispatch::none()));
        Self { queue }
    }

    /// Appends `row`; returns once the group holding it is committed (fsynced).
    ///
    /// # Errors
    ///
    /// The row could not be written, or the store is closed.
    pub(crate) async fn append(&self, row: NewOutboxEvent) -> Result<(), StoreError> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Pending { row, done })
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

/// The writer task: waits for appends, writes each group as it finds it, answers its callers.
async fn write_groups(writer: SqlitePool, mut pending: mpsc::Receiver<Pending>) {
    let mut group = Vec::with_capacity(MAX_BATCH);
    while pending.recv_many(&mut group, MAX_BATCH).await > 0 {
        let rows: Vec<&NewOutboxEvent> = group.iter().map(|p| &p.row).collect();
        match insert(&writer, &rows).await {
            Ok(()) => {
                for waiting in group.drain(..) {
                    let _ = waiting.done.send(Ok(()));
                }
            }
            Err(error) if group.len() == 1 => {
                if let Some(waiting) = group.pop() {
                    let _ = waiting.done.send(Err(error));
                }
            }
            Err(_) => {
                for waiting in group.drain(..) {
                    let alone = insert(&writer, &[&waiting.row]).await;
                    let _ = waiting.done.send(alone);
                }
            }
        }
    }
}

/// Writes `rows` (1 to [`MAX_BATCH`]) as one statement, so one transaction.
async fn insert(writer: &SqlitePool, rows: &[&NewOutboxEvent]) -> Result<(), StoreError> {
    let trace_headers = rows
        .iter()
        .map(|row| {
            serde_json::to_string(&row.trace_headers)
                .map_err(|e| StoreError::Corrupt(format!("trace headers: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut query = sqlx::query(insert_statement(rows.len()));
    for (row, trace_headers) in rows.iter().zip(trace_headers) {
        query = query
            .bind(row.event_id.to_string())
            .bind(row.subject.as_str())
            .bind(row.payload.as_slice())
            .bind(row.rotation_id.as_str())
            .bind(trace_headers)
            .bind(row.request_id.as_str())
            .bind(row.created_at.timestamp_micros());
    }
    query
        .execute(writer)
        .await
        .map(drop)
        .map_err(StoreError::query)
}

/// The `INSERT` of `rows` rows, built once per size (each size is one prepared statement on the
/// writer connection).
fn insert_statement(rows: usize) -> &'static str {
    static STATEMENTS: OnceLock<Vec<String>> = OnceLock::new();
    let statements = STATEMENTS.get_or_init(|| {
        (1..=MAX_BATCH)
            .map(|size| {
                let values = (0..size)
                    .map(|row| {
                        let first = row * 7;
                        let params = (1..=7)
                            .map(|column| format!("${}", first + column))
                            .collect::<Vec<_>>()
                            .join(", ");
                        format!("({params})")
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "INSERT INTO outbox \
                     (event_id, subject, payload, rotation_id, trace_headers, request_id, \
                      created_at) \
                     VALUES {values} ON CONFLICT (event_id) DO NOTHING"
                )
            })
            .collect()
    });
    let index = rows.clamp(1, MAX_BATCH) - 1;
    statements[index].as_str()
}

/// The writer task is gone: the store is closed.
pub(super) fn closed() -> StoreError {
    StoreError::Query(sqlx::Error::PoolClosed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db::testing::TestStore;
    use crate::store::{ReadOutbox as _, WriteOutbox as _};

    fn event(rotation: &str, n: usize) -> NewOutboxEvent {
        NewOutboxEvent {
            event_id: uuid::Uuid::now_v7(),
            subject: "postgres-credentials.completed".to_owned(),
            payload: format!("{{\"n\":{n}}}").into_bytes(),
            rotation_id: rotation.to_owned(),
            trace_headers: Vec::new(),
            request_id: format!("{rotation}-{n}"),
            created_at: chrono::Utc::now(),
        }
    }

    /// Many appends at once (more than one group's worth, some repeated): each returns once its
    /// row is stored, every row is stored once, and one rotation's rows keep their order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_are_each_stored_once_in_order() {
        let test = TestStore::sqlite().await;
        let store = test.store.clone();
        let mut appends = tokio::task::JoinSet::new();
        for rotation in 0..(3 * MAX_BATCH) {
            let store = store.clone();
            appends.spawn(async move {
                let name = format!("r{rotation}");
                for n in 0..3 {
                    let row = event(&name, n);
                    store.append(row.clone()).await.expect("append");
                    store
                        .append(row)
                        .await
                        .expect("a repeated append is a no-op");
                }
            });
        }
        while let Some(done) = appends.join_next().await {
            done.expect("append task");
        }
        let rows = store.next_batch(0, 10 * MAX_BATCH).await.expect("read");
        assert_eq!(rows.len(), 3 * 3 * MAX_BATCH);
        let mut seen = std::collections::HashMap::<&str, Vec<&str>>::new();
        for row in &rows {
            seen.entry(row.event.rotation_id.as_str())
                .or_default()
                .push(row.event.request_id.as_str());
        }
        for (rotation, requests) in seen {
            let expected: Vec<String> = (0..3).map(|n| format!("{rotation}-{n}")).collect();
            assert_eq!(requests, expected, "{rotation}");
        }
        test.finish().await;
    }

    #[test]
    fn statements_number_every_parameter_once() {
        let three = insert_statement(3);
        assert!(three.contains("($1, $2, $3, $4, $5, $6, $7), ($8,"));
        assert!(three.contains("$21)"));
        assert!(!three.contains("$22"));
        assert!(insert_statement(MAX_BATCH).contains(&format!("${})", 7 * MAX_BATCH)));
    }
}
