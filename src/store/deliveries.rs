//! The delivery table: one row per (rotation, sink) with the version the sink should hold and
//! the version it took. Times are Unix milliseconds.
//!
//! The wanted version is raised inside the COMMIT transaction ([`want_in`]), so a crash right
//! after a commit still finds the delivery owed. `delivered_version` only grows: a mark for a
//! version at or below it changes nothing (and writes no event).

use std::future::Future;

use chrono::{DateTime, Utc};

use super::db::{Columns, on_db};
use super::local::StoredCredential;
use super::outbox::append_in;
use super::{NewOutboxEvent, Store, StoreError};

/// One sink's delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    /// The rotation.
    pub rotation_id: String,
    /// The sink's name within the rotation.
    pub sink: String,
    /// The committed version the sink should hold.
    pub wanted_version: u64,
    /// The newest version the sink took (0: none yet).
    pub delivered_version: u64,
    /// When it took it.
    pub delivered_at: Option<DateTime<Utc>>,
    /// The redacted error of the last failed try; `None` after a success.
    pub last_error: Option<String>,
    /// When the current run of failures began.
    pub failing_since: Option<DateTime<Utc>>,
    /// Failed tries since the last success (or since the wanted version last changed).
    pub failures: u32,
    /// Not tried again before this.
    pub next_try_at: DateTime<Utc>,
}

/// The committed credential of a rotation with its version, read in one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedCredential {
    /// The rotation's version (one per COMMIT).
    pub version: u64,
    /// When that version was committed.
    pub committed_at: Option<DateTime<Utc>>,
    /// The active slot's sealed credential.
    pub credential: StoredCredential,
}

/// What the delivery worker and `GetSecretRotation` need from the store.
pub trait DeliveryStore: Send + Sync {
    /// Creates the row of a sink that has none, owing the rotation's current version (a sink
    /// added by a reload); nothing before the first commit.
    ///
    /// # Errors
    ///
    /// The store could not write.
    fn ensure_delivery(
        &self,
        rotation_id: &str,
        sink: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Rows whose sink lags its wanted version and whose next try is due.
    ///
    /// # Errors
    ///
    /// The store could not read.
    fn due_deliveries(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<DeliveryRow>, StoreError>> + Send;

    /// When the next lagging row is due, if any.
    ///
    /// # Errors
    ///
    /// The store could not read.
    fn next_delivery_at(
        &self,
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>, StoreError>> + Send;

    /// Every row of a rotation, by sink name.
    ///
    /// # Errors
    ///
    /// The store could not read.
    fn deliveries(
        &self,
        rotation_id: &str,
    ) -> impl Future<Output = Result<Vec<DeliveryRow>, StoreError>> + Send;

    /// The active credential and the version that committed it.
    ///
    /// # Errors
    ///
    /// The store could not read.
    fn committed_credential(
        &self,
        rotation_id: &str,
    ) -> impl Future<Output = Result<Option<CommittedCredential>, StoreError>> + Send;

    /// Records that `sink` took `version`, and its event, in one transaction; `false` (and no
    /// event) when it already held that version or a newer one.
    ///
    /// # Errors
    ///
    /// The store could not write.
    fn mark_delivered(
        &self,
        rotation_id: &str,
        sink: &str,
        version: u64,
        at: DateTime<Utc>,
        event: &NewOutboxEvent,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records a failed try of `version` and when to try again, with its event (if any) in the
    /// same transaction.
    ///
    /// # Errors
    ///
    /// The store could not write.
    fn mark_failed(
        &self,
        failed: &FailedDelivery,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A failed try, as [`DeliveryStore::mark_failed`] records it.
#[derive(Debug, Clone)]
pub struct FailedDelivery {
    /// The rotation.
    pub rotation_id: String,
    /// The sink.
    pub sink: String,
    /// The version that was tried.
    pub version: u64,
    /// Redacted; never a secret.
    pub error: String,
    /// When it failed.
    pub at: DateTime<Utc>,
    /// When to try again.
    pub next_try_at: DateTime<Utc>,
    /// The CredentialDeliveryFailed event, when one is due.
    pub event: Option<NewOutboxEvent>,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn time(v: Option<i64>) -> Option<DateTime<Utc>> {
    v.and_then(DateTime::from_timestamp_millis)
}

fn version(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Inside the open COMMIT transaction `$tx`: the sink `$sink` of `$rotation_id` now wants the
/// rotation's (just raised) version, tried at once.
macro_rules! want_in {
    ($tx:expr, $rotation_id:expr, $sink:expr, $now:expr) => {
        async {
            sqlx::query(
                "INSERT INTO local_deliveries (rotation_id, sink, wanted_version, next_try_at) \
                 SELECT rotation_id, $2, version, $3 FROM local_rotations WHERE rotation_id = $1 \
                 ON CONFLICT (rotation_id, sink) DO UPDATE SET \
                 wanted_version = excluded.wanted_version, next_try_at = excluded.next_try_at, \
                 failures = 0",
            )
            .bind($rotation_id)
            .bind($sink)
            .bind($now)
            .execute($tx)
            .await
            .map_err(StoreError::query)?;
            Ok::<(), StoreError>(())
        }
    };
}
pub(crate) use want_in;

fn decode(row: &impl Columns) -> Result<DeliveryRow, StoreError> {
    let count = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(DeliveryRow {
        rotation_id: row.text("rotation_id")?,
        sink: row.text("sink")?,
        wanted_version: count(row.int("wanted_version")?),
        delivered_version: count(row.int("delivered_version")?),
        delivered_at: time(row.opt_int("delivered_at")?),
        last_error: row.opt_text("last_error")?,
        failing_since: time(row.opt_int("failing_since")?),
        failures: u32::try_from(row.int("failures")?).unwrap_or(u32::MAX),
        next_try_at: time(Some(row.int("next_try_at")?)).unwrap_or_default(),
    })
}

impl DeliveryStore for Store {
    async fn ensure_delivery(
        &self,
        rotation_id: &str,
        sink: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_db!(self, |writer, reader, postgres| {
            sqlx::query(
                "INSERT INTO local_deliveries (rotation_id, sink, wanted_version, next_try_at) \
                 SELECT rotation_id, $2, version, $3 FROM local_rotations \
                 WHERE rotation_id = $1 AND version > 0 \
                 ON CONFLICT (rotation_id, sink) DO NOTHING",
            )
            .bind(rotation_id)
            .bind(sink)
            .bind(ms(now))
            .execute(writer)
            .await
            .map_err(StoreError::query)?;
            Ok(())
        })
    }

    async fn due_deliveries(&self, now: DateTime<Utc>) -> Result<Vec<DeliveryRow>, StoreError> {
        on_db!(self, |writer, reader, postgres| {
            let rows = sqlx::query(
                "SELECT * FROM local_deliveries \
                 WHERE delivered_version < wanted_version AND next_try_at <= $1 \
                 ORDER BY next_try_at",
            )
            .bind(ms(now))
            .fetch_all(writer)
            .await
            .map_err(StoreError::query)?;
            rows.iter().map(decode).collect()
        })
    }

    async fn next_delivery_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        on_db!(self, |writer, reader, postgres| {
            let next: Option<i64> = sqlx::query_scalar(
                "SELECT MIN(next_try_at) FROM local_deliveries \
                 WHERE delivered_version < wanted_version",
            )
            .fetch_one(writer)
            .await
            .map_err(StoreError::query)?;
            Ok(time(next))
        })
    }

    async fn deliveries(&self, rotation_id: &str) -> Result<Vec<DeliveryRow>, StoreError> {
        on_db!(self, |writer, reader, postgres| {
            let rows =
                sqlx::query("SELECT * FROM local_deliveries WHERE rotation_id = $1 ORDER BY sink")
                    .bind(rotation_id)
                    .fetch_all(writer)
                    .await
                    .map_err(StoreError::query)?;
            rows.iter().map(decode).collect()
        })
    }

    async fn committed_credential(
        &self,
        rotation_id: &str,
    ) -> Result<Option<CommittedCredential>, StoreError> {
        on_db!(self, |writer, reader, postgres| {
            let row = sqlx::query(
                "SELECT r.version, r.last_rotated_at, c.slot, c.key_id, c.ciphertext, \
                 c.credential_id FROM local_rotations r JOIN local_credentials c \
                 ON c.rotation_id = r.rotation_id AND c.slot = r.active_index \
                 WHERE r.rotation_id = $1 AND r.version > 0",
            )
            .bind(rotation_id)
            .fetch_optional(writer)
            .await
            .map_err(StoreError::query)?;
            row.map(|r| {
                let slot = u32::try_from(r.int("slot")?).unwrap_or(0);
                Ok(CommittedCredential {
                    version: u64::try_from(r.int("version")?).unwrap_or(0),
                    committed_at: time(r.opt_int("last_rotated_at")?),
                    credential: StoredCredential {
                        slot,
                        key_id: r.text("key_id")?,
                        ciphertext: r.bytes("ciphertext")?,
                        id: r.opt_text("credential_id")?,
                        active_index: slot,
                    },
                })
            })
            .transpose()
        })
    }

    async fn mark_delivered(
        &self,
        rotation_id: &str,
        sink: &str,
        delivered: u64,
        at: DateTime<Utc>,
        event: &NewOutboxEvent,
    ) -> Result<bool, StoreError> {
        on_db!(self, |writer, reader, postgres| {
            let mut tx = writer.begin().await.map_err(StoreError::query)?;
            let done = sqlx::query(
                "UPDATE local_deliveries SET delivered_version = $1, delivered_at = $2, \
                 last_error = NULL, failing_since = NULL, failures = 0 \
                 WHERE rotation_id = $3 AND sink = $4 AND delivered_version < $1",
            )
            .bind(version(delivered))
            .bind(ms(at))
            .bind(rotation_id)
            .bind(sink)
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

    async fn mark_failed(&self, f: &FailedDelivery) -> Result<(), StoreError> {
        on_db!(self, |writer, reader, postgres| {
            let mut tx = writer.begin().await.map_err(StoreError::query)?;
            let done = sqlx::query(
                "UPDATE local_deliveries SET last_error = $1, \
                 failing_since = COALESCE(failing_since, $2), failures = failures + 1, \
                 next_try_at = $3 \
                 WHERE rotation_id = $4 AND sink = $5 AND delivered_version < $6",
            )
            .bind(&f.error)
            .bind(ms(f.at))
            .bind(ms(f.next_try_at))
            .bind(&f.rotation_id)
            .bind(&f.sink)
            .bind(version(f.version))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query)?;
            if done.rows_affected() > 0
                && let Some(event) = &f.event
            {
                append_in!(&mut *tx, postgres, event).await?;
            }
            tx.commit().await.map_err(StoreError::query)
        })
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::rotation::AttemptState;
    use crate::store::ReadOutbox as _;
    use crate::store::local::{
        AttemptRow, AttemptStore as _, CommitAttempt, LeaseOutcome, LeaseStore as _,
        RotationStateStore as _,
    };

    fn event(rotation: &str) -> NewOutboxEvent {
        NewOutboxEvent {
            event_id: Uuid::now_v7(),
            subject: "postgres-credentials.delivered".into(),
            payload: b"{}".to_vec(),
            rotation_id: rotation.into(),
            trace_headers: Vec::new(),
            request_id: "q".into(),
            created_at: Utc::now(),
        }
    }

    async fn commit(store: &Store, rotation: &str, slot: u32) {
        let LeaseOutcome::Acquired(token) = store
            .acquire(rotation, "a", crate::store::LEASE_TTL)
            .await
            .expect("lease")
        else {
            panic!("free lease");
        };
        let attempt_id = Uuid::now_v7();
        let row = AttemptRow {
            attempt_id,
            rotation_id: rotation.into(),
            slot,
            state: AttemptState::Prepared,
            key_id: "k".into(),
            candidate: vec![u8::try_from(slot).unwrap_or(0)],
            candidate_id: Some(format!("user{slot}")),
            ids_before: None,
            fencing_token: token,
            scheduled: false,
            request_id: "q".into(),
            transient: 0,
            regenerations: 0,
            error: None,
            created_at: Utc::now(),
        };
        store.prepare(&row, None).await.expect("prepare");
        let commit = CommitAttempt {
            attempt_id,
            rotation_id: rotation.into(),
            slot,
            key_id: "k".into(),
            ciphertext: vec![u8::try_from(slot).unwrap_or(0)],
            credential_id: Some(format!("user{slot}")),
            at: Utc::now(),
            next_rotation_at: None,
            manual: true,
            event: event(rotation),
            sinks: vec!["file:/a".into()],
        };
        store.commit(&commit, token).await.expect("commit");
    }

    crate::store::db::testing::on_each_backend!(
        wanted_versions,
        super::the_commit_raises_the_wanted_version_and_marks_never_go_back
    );

    async fn the_commit_raises_the_wanted_version_and_marks_never_go_back(store: &Store) {
        store
            .ensure_rotations(vec!["d".to_owned()])
            .await
            .expect("ensure");
        assert_eq!(store.committed_credential("d").await.expect("read"), None);
        store
            .ensure_delivery("d", "file:/a", Utc::now())
            .await
            .expect("ensure");
        assert!(
            store.deliveries("d").await.expect("rows").is_empty(),
            "nothing is owed before the first commit"
        );
        commit(store, "d", 0).await;
        commit(store, "d", 1).await;
        let committed = store
            .committed_credential("d")
            .await
            .expect("read")
            .expect("committed");
        assert_eq!((committed.version, committed.credential.slot), (2, 1));
        let due = store.due_deliveries(Utc::now()).await.expect("due");
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].wanted_version, due[0].delivered_version), (2, 0));

        let sent_before = store.backlog().await.expect("outbox").depth;
        let later = Utc::now() + chrono::Duration::seconds(60);
        store
            .mark_failed(&FailedDelivery {
                rotation_id: "d".into(),
                sink: "file:/a".into(),
                version: 2,
                error: "refused".into(),
                at: Utc::now(),
                next_try_at: later,
                event: Some(event("d")),
            })
            .await
            .expect("fail");
        assert!(
            store
                .due_deliveries(Utc::now())
                .await
                .expect("due")
                .is_empty()
        );
        let row = &store.deliveries("d").await.expect("rows")[0];
        assert_eq!(
            (row.failures, row.last_error.as_deref()),
            (1, Some("refused"))
        );
        assert!(row.failing_since.is_some());

        assert!(
            store
                .mark_delivered("d", "file:/a", 2, Utc::now(), &event("d"))
                .await
                .expect("mark")
        );
        assert!(
            !store
                .mark_delivered("d", "file:/a", 1, Utc::now(), &event("d"))
                .await
                .expect("mark"),
            "an older version never replaces a newer one"
        );
        let row = &store.deliveries("d").await.expect("rows")[0];
        assert_eq!((row.delivered_version, row.last_error.clone()), (2, None));
        assert_eq!(
            store.backlog().await.expect("outbox").depth,
            sent_before + 2,
            "one failure event and one delivered event, none for the refused mark"
        );
    }
}
