//! The handover tables: which committed version each named consumer of a rotation confirmed it
//! uses, and for which versions the grace ended before they all did. Times are Unix
//! milliseconds.
//!
//! A confirmation is checked against the rotation's committed version inside its own
//! transaction (the rotation's row is locked first, so a COMMIT cannot slip in between), and
//! a consumer's row only moves up: a repeated confirmation of the same version writes nothing.

use std::future::Future;

use chrono::{DateTime, Utc};

use super::db::{Columns, on_db};
use super::outbox::append_in;
use super::{NewOutboxEvent, Store, StoreError};

/// One consumer's newest confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmationRow {
    /// The consumer's name.
    pub consumer: String,
    /// The newest committed version it confirmed.
    pub version: u64,
    /// When it first confirmed that version.
    pub confirmed_at: DateTime<Utc>,
}

/// A rotation's committed version and its consumers' confirmations, read in one statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandoverState {
    /// The committed version (0 before the first commit).
    pub version: u64,
    /// When that version was committed.
    pub committed_at: Option<DateTime<Utc>>,
    /// Every recorded confirmation, by consumer name.
    pub confirmations: Vec<ConfirmationRow>,
}

/// One confirmation to record.
#[derive(Debug, Clone)]
pub struct Confirm<'a> {
    /// The rotation.
    pub rotation_id: &'a str,
    /// The confirming consumer.
    pub consumer: &'a str,
    /// The version it confirms.
    pub version: u64,
    /// Now.
    pub at: DateTime<Utc>,
    /// Every consumer the rotation names: the handover is complete when all confirmed.
    pub named: &'a [String],
    /// The CredentialHandoverComplete event, appended if this confirmation completes it.
    pub complete_event: Option<&'a NewOutboxEvent>,
}

/// What [`HandoverStore::confirm`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmed {
    /// Recorded now; `complete` when every named consumer has now confirmed the version (and
    /// the complete event, if given, was appended in the same transaction).
    Recorded {
        /// When.
        confirmed_at: DateTime<Utc>,
        /// Whether this confirmation completed the handover.
        complete: bool,
    },
    /// The consumer had already confirmed this version; nothing was written.
    Already {
        /// When it first did.
        confirmed_at: DateTime<Utc>,
    },
    /// The version is not the rotation's committed version; nothing was written.
    NotCurrent {
        /// The committed version (0 before the first commit).
        current: u64,
    },
}

/// What confirmed handover needs from the store.
pub trait HandoverStore: Send + Sync {
    /// The committed version, when it was committed, and every consumer's confirmation.
    ///
    /// # Errors
    ///
    /// The store could not read.
    fn handover_state(
        &self,
        rotation_id: &str,
    ) -> impl Future<Output = Result<HandoverState, StoreError>> + Send;

    /// Records a consumer's confirmation of the committed version, in one transaction with
    /// the check that it is the committed version and, when it completes the handover, the
    /// complete event.
    ///
    /// # Errors
    ///
    /// The store could not write.
    fn confirm(
        &self,
        confirm: &Confirm<'_>,
    ) -> impl Future<Output = Result<Confirmed, StoreError>> + Send;

    /// Records that the grace of `version` ended with consumers unconfirmed, with its event,
    /// once: `false` (and no event) when it was already recorded.
    ///
    /// # Errors
    ///
    /// The store could not write.
    fn record_timeout(
        &self,
        rotation_id: &str,
        version: u64,
        at: DateTime<Utc>,
        event: &NewOutboxEvent,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn time(v: Option<i64>) -> Option<DateTime<Utc>> {
    v.and_then(DateTime::from_timestamp_millis)
}

fn stored(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl HandoverStore for Store {
    async fn handover_state(&self, rotation_id: &str) -> Result<HandoverState, StoreError> {
        on_db!(self, |writer, reader, postgres| {
            let rows = sqlx::query(
                "SELECT r.version AS current_version, r.last_rotated_at, c.consumer, \
                 c.version AS confirmed_version, c.confirmed_at \
                 FROM local_rotations r LEFT JOIN local_handover_confirmations c \
                 ON c.rotation_id = r.rotation_id \
                 WHERE r.rotation_id = $1 ORDER BY c.consumer",
            )
            .bind(rotation_id)
            .fetch_all(reader)
            .await
            .map_err(StoreError::query)?;
            let mut state = HandoverState::default();
            for row in &rows {
                state.version = count(row.int("current_version")?);
                state.committed_at = time(row.opt_int("last_rotated_at")?);
                if let (Some(consumer), Some(version), Some(at)) = (
                    row.opt_text("consumer")?,
                    row.opt_int("confirmed_version")?,
                    time(row.opt_int("confirmed_at")?),
                ) {
                    state.confirmations.push(ConfirmationRow {
                        consumer,
                        version: count(version),
                        confirmed_at: at,
                    });
                }
            }
            Ok(state)
        })
    }

    async fn confirm(&self, c: &Confirm<'_>) -> Result<Confirmed, StoreError> {
        on_db!(self, |writer, reader, postgres| {
            let mut tx = writer.begin().await.map_err(StoreError::query)?;
            // Locks the rotation's row: a COMMIT raising the version waits for this
            // transaction, so the check below holds until it commits.
            let current: Option<i64> = sqlx::query_scalar(
                "UPDATE local_rotations SET version = version WHERE rotation_id = $1 \
                 RETURNING version",
            )
            .bind(c.rotation_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::query)?;
            let current = current.map_or(0, count);
            if current != c.version {
                return Ok(Confirmed::NotCurrent { current });
            }
            let raised = sqlx::query(
                "INSERT INTO local_handover_confirmations \
                 (rotation_id, consumer, version, confirmed_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (rotation_id, consumer) DO UPDATE SET \
                 version = excluded.version, confirmed_at = excluded.confirmed_at \
                 WHERE local_handover_confirmations.version < excluded.version",
            )
            .bind(c.rotation_id)
            .bind(c.consumer)
            .bind(stored(c.version))
            .bind(ms(c.at))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query)?;
            if raised.rows_affected() == 0 {
                let first: i64 = sqlx::query_scalar(
                    "SELECT confirmed_at FROM local_handover_confirmations \
                     WHERE rotation_id = $1 AND consumer = $2",
                )
                .bind(c.rotation_id)
                .bind(c.consumer)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::query)?;
                return Ok(Confirmed::Already {
                    confirmed_at: time(Some(first)).unwrap_or(c.at),
                });
            }
            let confirmed: Vec<String> = sqlx::query_scalar(
                "SELECT consumer FROM local_handover_confirmations \
                 WHERE rotation_id = $1 AND version = $2",
            )
            .bind(c.rotation_id)
            .bind(stored(c.version))
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::query)?;
            let complete = c.named.iter().all(|n| confirmed.contains(n));
            if complete && let Some(event) = c.complete_event {
                append_in!(&mut *tx, postgres, event).await?;
            }
            tx.commit().await.map_err(StoreError::query)?;
            Ok(Confirmed::Recorded {
                confirmed_at: c.at,
                complete,
            })
        })
    }

    async fn record_timeout(
        &self,
        rotation_id: &str,
        version: u64,
        at: DateTime<Utc>,
        event: &NewOutboxEvent,
    ) -> Result<bool, StoreError> {
        on_db!(self, |writer, reader, postgres| {
            let mut tx = writer.begin().await.map_err(StoreError::query)?;
            let done = sqlx::query(
                "INSERT INTO local_handover_timeouts (rotation_id, version, timed_out_at) \
                 VALUES ($1, $2, $3) ON CONFLICT (rotation_id, version) DO NOTHING",
            )
            .bind(rotation_id)
            .bind(stored(version))
            .bind(ms(at))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query)?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            append_in!(&mut *tx, postgres, event).await?;
            tx.commit().await.map_err(StoreError::query)?;
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::store::ReadOutbox as _;
    use crate::store::local::RotationStateStore as _;

    fn event(rotation: &str) -> NewOutboxEvent {
        NewOutboxEvent {
            event_id: Uuid::now_v7(),
            subject: "redis-credentials.handover-complete".into(),
            payload: b"{}".to_vec(),
            rotation_id: rotation.into(),
            trace_headers: Vec::new(),
            request_id: "q".into(),
            created_at: Utc::now(),
        }
    }

    /// Sets the committed version directly (what COMMIT does, without an attempt).
    async fn set_version(store: &Store, rotation: &str, version: u64) {
        on_db!(store, |writer, reader, postgres| {
            sqlx::query(
                "UPDATE local_rotations SET version = $1, last_rotated_at = $2 \
                 WHERE rotation_id = $3",
            )
            .bind(stored(version))
            .bind(ms(Utc::now()))
            .bind(rotation)
            .execute(writer)
            .await
            .map(drop)
        })
        .expect("set version");
    }

    crate::store::db::testing::on_each_backend!(
        confirmations,
        super::confirmations_are_checked_against_the_committed_version_and_only_rise
    );

    async fn confirmations_are_checked_against_the_committed_version_and_only_rise(store: &Store) {
        store
            .ensure_rotations(vec!["h".to_owned()])
            .await
            .expect("ensure");
        set_version(store, "h", 2).await;
        let named = ["a".to_owned(), "b".to_owned()];
        let done = event("h");
        let confirm = |consumer: &'static str, version: u64| Confirm {
            rotation_id: "h",
            consumer,
            version,
            at: Utc::now(),
            named: &named,
            complete_event: Some(&done),
        };
        let before = store.backlog().await.expect("outbox").depth;

        assert_eq!(
            store.confirm(&confirm("a", 1)).await.expect("confirm"),
            Confirmed::NotCurrent { current: 2 },
            "an older version is refused"
        );
        assert!(matches!(
            store.confirm(&confirm("a", 2)).await.expect("confirm"),
            Confirmed::Recorded {
                complete: false,
                ..
            }
        ));
        let Confirmed::Already { confirmed_at } =
            store.confirm(&confirm("a", 2)).await.expect("again")
        else {
            panic!("a repeated confirmation writes nothing");
        };
        assert!(matches!(
            store.confirm(&confirm("b", 2)).await.expect("confirm"),
            Confirmed::Recorded { complete: true, .. }
        ));
        assert_eq!(
            store.backlog().await.expect("outbox").depth,
            before + 1,
            "one complete event"
        );
        let state = store.handover_state("h").await.expect("state");
        assert_eq!(state.version, 2);
        assert!(state.committed_at.is_some());
        assert_eq!(
            state
                .confirmations
                .iter()
                .map(|c| (c.consumer.as_str(), c.version))
                .collect::<Vec<_>>(),
            [("a", 2), ("b", 2)]
        );
        assert_eq!(
            state.confirmations[0].confirmed_at.timestamp_millis(),
            confirmed_at.timestamp_millis()
        );

        set_version(store, "h", 3).await;
        assert!(matches!(
            store.confirm(&confirm("a", 3)).await.expect("confirm"),
            Confirmed::Recorded {
                complete: false,
                ..
            }
        ));
        let state = store.handover_state("h").await.expect("state");
        assert_eq!(
            state
                .confirmations
                .iter()
                .map(|c| (c.consumer.as_str(), c.version))
                .collect::<Vec<_>>(),
            [("a", 3), ("b", 2)]
        );

        let timed_out = event("h");
        assert!(
            store
                .record_timeout("h", 3, Utc::now(), &timed_out)
                .await
                .expect("timeout")
        );
        assert!(
            !store
                .record_timeout("h", 3, Utc::now(), &event("h"))
                .await
                .expect("again"),
            "one timeout per version"
        );
        assert_eq!(store.backlog().await.expect("outbox").depth, before + 2);
        assert_eq!(
            store.handover_state("unknown").await.expect("state"),
            HandoverState::default()
        );
    }
}
