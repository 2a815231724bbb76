//! The local-rotation tables on [`Store`]. Times are Unix milliseconds.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::db::{Columns, on_db, write_tx};
use super::deliveries::want_in;
use super::outbox::append_in;
use super::{Store, StoreError};
use crate::store::local::{
    AttemptRow, AttemptStore, CommitAttempt, FailAttempt, LeaseOutcome, LeaseStore, LocalStatus,
    RotationState, RotationStateStore, StoredCredential, parse_state, state_name,
};

/// How long a lease lasts past each fenced write, unless configured
/// (`local.lease_ttl_seconds`).
pub const LEASE_TTL: Duration = Duration::from_secs(120);

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn time(v: Option<i64>) -> Option<DateTime<Utc>> {
    v.and_then(DateTime::from_timestamp_millis)
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2)
}

/// A fenced write that changed no row lost its lease.
fn held(rows_affected: u64) -> Result<(), StoreError> {
    if rows_affected == 0 {
        Err(StoreError::LostLease)
    } else {
        Ok(())
    }
}

/// Rows per INSERT of [`RotationStateStore::ensure_rotations`]: three binds each, far below
/// both databases' bind limits.
const ENSURE_CHUNK: usize = 500;

fn count(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

/// Renews the lease of `$rotation_id` inside the open transaction `$tx` if `$token` still holds
/// it, else [`StoreError::LostLease`]. The update row-locks the lease until the transaction
/// ends, so two holders' fenced writes never interleave.
macro_rules! fence {
    ($tx:expr, $ttl:expr, $rotation_id:expr, $token:expr) => {
        async {
            let done = sqlx::query(
                "UPDATE local_leases SET expires_at = $1 WHERE rotation_id = $2 \
                 AND fencing_token = $3 AND holder <> ''",
            )
            .bind(ms(Utc::now()) + ttl_ms($ttl))
            .bind($rotation_id)
            .bind($token)
            .execute(&mut *$tx)
            .await
            .map_err(StoreError::query)?;
            held(done.rows_affected())
        }
    };
}

/// Closes the open attempt `$attempt_id` inside `$tx` as `$state`, fenced by its token; zero
/// rows is a lost lease.
macro_rules! close_attempt {
    ($tx:expr, $attempt_id:expr, $token:expr, $state:expr, $error:expr) => {
        async {
            let done = sqlx::query(
                "UPDATE local_attempts SET state = $1, error = $2, updated_at = $3 \
                 WHERE attempt_id = $4 AND fencing_token = $5 \
                 AND state IN ('prepared', 'applied', 'verified')",
            )
            .bind($state)
            .bind($error)
            .bind(ms(Utc::now()))
            .bind($attempt_id.to_string())
            .bind($token)
            .execute(&mut *$tx)
            .await
            .map_err(StoreError::query)?;
            held(done.rows_affected())
        }
    };
}

/// Frees the lease of `$rotation_id` inside `$tx` if `$token` still holds it. COMMIT and FAIL
/// end with it, so a finished attempt needs no separate (fsynced) release.
macro_rules! release_in {
    ($tx:expr, $rotation_id:expr, $token:expr) => {
        async {
            sqlx::query(
                "UPDATE local_leases SET holder = '', expires_at = 0 \
                 WHERE rotation_id = $1 AND fencing_token = $2 AND holder <> ''",
            )
            .bind($rotation_id)
            .bind($token)
            .execute(&mut *$tx)
            .await
            .map(|_| ())
            .map_err(StoreError::query)
        }
    };
}

/// Records an idempotency key inside `$tx` (the first record wins).
macro_rules! remember_key_in {
    ($tx:expr, $rotation_id:expr, $key:expr, $attempt_id:expr) => {
        async {
            sqlx::query(
                "INSERT INTO local_idempotency_keys (rotation_id, key, attempt_id, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (rotation_id, key) DO NOTHING",
            )
            .bind($rotation_id)
            .bind($key)
            .bind($attempt_id.to_string())
            .bind(ms(Utc::now()))
            .execute(&mut *$tx)
            .await
            .map(|_| ())
            .map_err(StoreError::query)
        }
    };
}

// === impl Store (idempotency keys, leases at start-up) ===

impl Store {
    /// The attempt that the idempotency `key` of `rotation_id` names, if the key was seen.
    ///
    /// # Errors
    ///
    /// The query failed or the stored id is not a UUID.
    pub async fn attempt_for_key(
        &self,
        rotation_id: &str,
        key: &str,
    ) -> Result<Option<Uuid>, StoreError> {
        let id: Option<String> = on_db!(self, |writer, reader, postgres| {
            sqlx::query_scalar(
                "SELECT attempt_id FROM local_idempotency_keys \
                 WHERE rotation_id = $1 AND key = $2",
            )
            .bind(rotation_id)
            .bind(key)
            .fetch_optional(reader)
            .await
            .map_err(StoreError::query)
        })?;
        id.map(|s| Uuid::parse_str(&s).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    /// Records that `key` of `rotation_id` names `attempt_id` (the first record wins). A new
    /// attempt records its key inside [`AttemptStore::prepare`]; this is for a call that
    /// resumes an attempt left open.
    ///
    /// # Errors
    ///
    /// The query failed.
    pub async fn remember_key(
        &self,
        rotation_id: &str,
        key: &str,
        attempt_id: Uuid,
    ) -> Result<(), StoreError> {
        let (rotation_id, key) = (rotation_id.to_owned(), key.to_owned());
        write_tx!(self, |tx, postgres| {
            remember_key_in!(tx, &rotation_id, &key, attempt_id).await
        })
    }

    /// Frees every lease, for a store only this process uses (SQLite): at start-up no other
    /// holder can be alive, so a lease left by a crashed process is released at once instead
    /// of after its expiry. A shared store (PostgreSQL) is left alone: its leases may belong to
    /// live replicas, and a dead one's lease expires after [`LEASE_TTL`]. Tokens keep growing.
    ///
    /// # Errors
    ///
    /// The store could not write.
    pub async fn break_leases(&self) -> Result<(), StoreError> {
        if self.is_shared() {
            return Ok(());
        }
        on_db!(self, |writer, reader, postgres| {
            sqlx::query("UPDATE local_leases SET holder = '', expires_at = 0")
                .execute(writer)
                .await
                .map(|_| ())
                .map_err(StoreError::query)
        })
    }
}

impl LeaseStore for Store {
    async fn acquire(
        &self,
        rotation_id: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<LeaseOutcome, StoreError> {
        let now = ms(Utc::now());
        let (rotation_id, holder) = (rotation_id.to_owned(), holder.to_owned());
        // One write statement, then a read.
        write_tx!(self, one_effect, |tx, postgres| {
            // One statement: of two concurrent takers, the row lock lets one update; the other
            // re-checks the WHERE against the new holder and gets no row.
            let token: Option<i64> = sqlx::query_scalar(
                "INSERT INTO local_leases (rotation_id, holder, fencing_token, expires_at) \
                 VALUES ($1, $2, 1, $3) \
                 ON CONFLICT (rotation_id) DO UPDATE SET holder = excluded.holder, \
                     fencing_token = local_leases.fencing_token + 1, \
                     expires_at = excluded.expires_at \
                 WHERE local_leases.expires_at <= $4 OR local_leases.holder = '' \
                 RETURNING fencing_token",
            )
            .bind(&rotation_id)
            .bind(&holder)
            .bind(now + ttl_ms(ttl))
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::query)?;
            if let Some(token) = token {
                return Ok::<_, StoreError>(LeaseOutcome::Acquired(token));
            }
            let holder: Option<String> =
                sqlx::query_scalar("SELECT holder FROM local_leases WHERE rotation_id = $1")
                    .bind(&rotation_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(StoreError::query)?;
            Ok(LeaseOutcome::HeldBy(holder.unwrap_or_default()))
        })
    }

    async fn renew(&self, rotation_id: &str, token: i64, ttl: Duration) -> Result<(), StoreError> {
        let rotation_id = rotation_id.to_owned();
        write_tx!(self, one_effect, |tx, postgres| {
            fence!(tx, ttl, &rotation_id, token).await
        })
    }

    async fn release(&self, rotation_id: &str, token: i64) -> Result<(), StoreError> {
        let rotation_id = rotation_id.to_owned();
        write_tx!(self, one_effect, |tx, postgres| {
            release_in!(tx, &rotation_id, token).await
        })
    }
}

pub(super) fn decode_state(row: &impl Columns) -> Result<RotationState, StoreError> {
    Ok(RotationState {
        active_index: count(row.int("active_index")?),
        status: if row.text("status")? == "failed" {
            LocalStatus::Failed
        } else {
            LocalStatus::Success
        },
        last_rotated_at: time(row.opt_int("last_rotated_at")?),
        last_rotation_attempted_at: time(row.opt_int("last_rotation_attempted_at")?),
        next_rotation_at: time(row.opt_int("next_rotation_at")?),
        is_last_rotation_manual: row.int("is_last_rotation_manual")? != 0,
        last_message: row.opt_text("last_message")?,
        created_at: time(Some(row.int("created_at")?)).unwrap_or_default(),
        updated_at: time(Some(row.int("updated_at")?)).unwrap_or_default(),
    })
}

impl RotationStateStore for Store {
    async fn ensure_rotations(&self, rotation_ids: Vec<String>) -> Result<(), StoreError> {
        let now = ms(Utc::now());
        write_tx!(self, |tx, postgres| {
            for chunk in rotation_ids.chunks(ENSURE_CHUNK) {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO local_rotations (rotation_id, created_at, updated_at) ",
                );
                insert.push_values(chunk, |mut row, id| {
                    row.push_bind(id).push_bind(now).push_bind(now);
                });
                insert.push(" ON CONFLICT (rotation_id) DO NOTHING");
                // Not kept in the statement cache: it runs at start-up and reload only.
                insert
                    .build()
                    .persistent(false)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query)?;
            }
            Ok::<_, StoreError>(())
        })
    }

    async fn rotation_state(&self, rotation_id: &str) -> Result<Option<RotationState>, StoreError> {
        on_db!(self, |writer, reader, postgres| {
            let row = sqlx::query("SELECT * FROM local_rotations WHERE rotation_id = $1")
                .bind(rotation_id)
                .fetch_optional(reader)
                .await
                .map_err(StoreError::query)?;
            row.as_ref().map(decode_state).transpose()
        })
    }

    async fn credentials(&self, rotation_id: &str) -> Result<Vec<StoredCredential>, StoreError> {
        on_db!(self, |writer, reader, postgres| {
            let rows = sqlx::query(
                "SELECT c.slot, c.key_id, c.ciphertext, c.credential_id, r.active_index \
                 FROM local_credentials c JOIN local_rotations r ON r.rotation_id = c.rotation_id \
                 WHERE c.rotation_id = $1 ORDER BY c.slot",
            )
            .bind(rotation_id)
            .fetch_all(reader)
            .await
            .map_err(StoreError::query)?;
            rows.iter()
                .map(|r| {
                    Ok(StoredCredential {
                        slot: count(r.int("slot")?),
                        key_id: r.text("key_id")?,
                        ciphertext: r.bytes("ciphertext")?,
                        id: r.opt_text("credential_id")?,
                        active_index: count(r.int("active_index")?),
                    })
                })
                .collect()
        })
    }

    async fn rotations_with_credentials(
        &self,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let ids: Vec<String> = on_db!(self, |writer, reader, postgres| {
            sqlx::query_scalar("SELECT DISTINCT rotation_id FROM local_credentials")
                .fetch_all(reader)
                .await
                .map_err(StoreError::query)
        })?;
        Ok(ids.into_iter().collect())
    }

    async fn due(&self, now: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        on_db!(self, |writer, reader, postgres| {
            sqlx::query_scalar(
                "SELECT rotation_id FROM local_rotations \
                 WHERE next_rotation_at IS NOT NULL AND next_rotation_at <= $1 \
                 ORDER BY next_rotation_at",
            )
            .bind(ms(now))
            .fetch_all(reader)
            .await
            .map_err(StoreError::query)
        })
    }
}

fn decode_attempt(row: &impl Columns) -> Result<AttemptRow, StoreError> {
    Ok(AttemptRow {
        attempt_id: Uuid::parse_str(&row.text("attempt_id")?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        rotation_id: row.text("rotation_id")?,
        slot: count(row.int("slot")?),
        state: parse_state(&row.text("state")?)?,
        key_id: row.text("key_id")?,
        candidate: row.bytes("candidate")?,
        candidate_id: row.opt_text("candidate_id")?,
        ids_before: row
            .opt_text("ids_before")?
            .map(|ids| ids.lines().map(str::to_owned).collect()),
        fencing_token: row.int("fencing_token")?,
        scheduled: row.text("trigger_kind")? == "scheduled",
        request_id: row.text("request_id")?,
        transient: count(row.int("transient")?),
        regenerations: count(row.int("regenerations")?),
        error: row.opt_text("error")?,
        created_at: time(Some(row.int("created_at")?)).unwrap_or_default(),
    })
}

impl AttemptStore for Store {
    async fn prepare(
        &self,
        row: &AttemptRow,
        idempotency_key: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = ms(Utc::now());
        let (row, idempotency_key, lease_ttl) = (
            row.clone(),
            idempotency_key.map(str::to_owned),
            self.lease_ttl,
        );
        write_tx!(self, |tx, postgres| {
            fence!(tx, lease_ttl, &row.rotation_id, row.fencing_token).await?;
            sqlx::query(
                "INSERT INTO local_attempts (attempt_id, rotation_id, slot, state, key_id, \
                 candidate, fencing_token, trigger_kind, request_id, transient, regenerations, \
                 created_at, updated_at, candidate_id, ids_before) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            )
            .bind(row.attempt_id.to_string())
            .bind(&row.rotation_id)
            .bind(i64::from(row.slot))
            .bind(state_name(row.state))
            .bind(&row.key_id)
            .bind(&row.candidate)
            .bind(row.fencing_token)
            .bind(if row.scheduled { "scheduled" } else { "manual" })
            .bind(&row.request_id)
            .bind(i64::from(row.transient))
            .bind(i64::from(row.regenerations))
            .bind(now)
            .bind(now)
            .bind(&row.candidate_id)
            .bind(row.ids_before.as_ref().map(|ids| ids.join("\n")))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query)?;
            sqlx::query(
                "UPDATE local_rotations SET last_rotation_attempted_at = $1, updated_at = $2 \
                 WHERE rotation_id = $3",
            )
            .bind(now)
            .bind(now)
            .bind(&row.rotation_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query)?;
            if let Some(key) = &idempotency_key {
                remember_key_in!(tx, &row.rotation_id, key, row.attempt_id).await?;
            }
            Ok::<(), StoreError>(())
        })
    }

    async fn transition(&self, row: &AttemptRow) -> Result<(), StoreError> {
        let (row, lease_ttl) = (row.clone(), self.lease_ttl);
        // On failure at most the fence's renewal of a lease this token holds stays behind.
        write_tx!(self, one_effect, |tx, postgres| {
            fence!(tx, lease_ttl, &row.rotation_id, row.fencing_token).await?;
            let done = sqlx::query(
                "UPDATE local_attempts SET state = $1, key_id = $2, candidate = $3, \
                 transient = $4, regenerations = $5, updated_at = $6, candidate_id = $7, \
                 ids_before = $8 \
                 WHERE attempt_id = $9 AND fencing_token = $10 \
                 AND state IN ('prepared', 'applied', 'verified')",
            )
            .bind(state_name(row.state))
            .bind(&row.key_id)
            .bind(&row.candidate)
            .bind(i64::from(row.transient))
            .bind(i64::from(row.regenerations))
            .bind(ms(Utc::now()))
            .bind(&row.candidate_id)
            .bind(row.ids_before.as_ref().map(|ids| ids.join("\n")))
            .bind(row.attempt_id.to_string())
            .bind(row.fencing_token)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query)?;
            held(done.rows_affected())
        })
    }

    async fn adopt(
        &self,
        attempt_id: Uuid,
        rotation_id: &str,
        token: i64,
    ) -> Result<(), StoreError> {
        let (rotation_id, lease_ttl) = (rotation_id.to_owned(), self.lease_ttl);
        write_tx!(self, |tx, postgres| {
            fence!(tx, lease_ttl, &rotation_id, token).await?;
            sqlx::query("UPDATE local_attempts SET fencing_token = $1 WHERE attempt_id = $2")
                .bind(token)
                .bind(attempt_id.to_string())
                .execute(&mut *tx)
                .await
                .map(drop)
                .map_err(StoreError::query)
        })
    }

    async fn open_attempts(&self) -> Result<Vec<AttemptRow>, StoreError> {
        on_db!(self, |writer, reader, postgres| {
            let rows = sqlx::query(
                "SELECT * FROM local_attempts WHERE state IN ('prepared', 'applied', 'verified') \
                 ORDER BY created_at",
            )
            .fetch_all(reader)
            .await
            .map_err(StoreError::query)?;
            rows.iter().map(decode_attempt).collect()
        })
    }

    async fn unheld_open_attempts(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<AttemptRow>, StoreError> {
        let now = ms(now);
        on_db!(self, |writer, reader, postgres| {
            let rows = sqlx::query(
                "SELECT a.* FROM local_attempts a \
                 LEFT JOIN local_leases l ON l.rotation_id = a.rotation_id \
                 WHERE a.state IN ('prepared', 'applied', 'verified') \
                 AND (l.rotation_id IS NULL OR l.holder = '' OR l.expires_at <= $1) \
                 ORDER BY a.created_at",
            )
            .bind(now)
            .fetch_all(reader)
            .await
            .map_err(StoreError::query)?;
            rows.iter().map(decode_attempt).collect()
        })
    }

    async fn open_attempt(&self, rotation_id: &str) -> Result<Option<AttemptRow>, StoreError> {
        on_db!(self, |writer, reader, postgres| {
            let row = sqlx::query(
                "SELECT * FROM local_attempts WHERE rotation_id = $1 \
                 AND state IN ('prepared', 'applied', 'verified') ORDER BY created_at LIMIT 1",
            )
            .bind(rotation_id)
            .fetch_optional(reader)
            .await
            .map_err(StoreError::query)?;
            row.as_ref().map(decode_attempt).transpose()
        })
    }

    async fn attempt(&self, attempt_id: Uuid) -> Result<Option<AttemptRow>, StoreError> {
        on_db!(self, |writer, reader, postgres| {
            let row = sqlx::query("SELECT * FROM local_attempts WHERE attempt_id = $1")
                .bind(attempt_id.to_string())
                .fetch_optional(reader)
                .await
                .map_err(StoreError::query)?;
            row.as_ref().map(decode_attempt).transpose()
        })
    }

    async fn commit(&self, c: &CommitAttempt, token: i64) -> Result<(), StoreError> {
        let at = ms(c.at);
        let (c, lease_ttl) = (c.clone(), self.lease_ttl);
        write_tx!(self, |tx, postgres| {
            fence!(tx, lease_ttl, &c.rotation_id, token).await?;
            close_attempt!(tx, c.attempt_id, token, "committed", None::<&str>).await?;
            sqlx::query(
                "INSERT INTO local_credentials (rotation_id, slot, key_id, ciphertext, \
                 updated_at, credential_id) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (rotation_id, slot) DO UPDATE SET key_id = excluded.key_id, \
                 ciphertext = excluded.ciphertext, updated_at = excluded.updated_at, \
                 credential_id = excluded.credential_id",
            )
            .bind(&c.rotation_id)
            .bind(i64::from(c.slot))
            .bind(&c.key_id)
            .bind(&c.ciphertext)
            .bind(at)
            .bind(&c.credential_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query)?;
            sqlx::query(
                "UPDATE local_rotations SET active_index = $1, status = 'success', \
                 version = version + 1, last_rotated_at = $2, last_rotation_attempted_at = $3, \
                 next_rotation_at = $4, \
                 is_last_rotation_manual = $5, last_message = NULL, updated_at = $6 \
                 WHERE rotation_id = $7",
            )
            .bind(i64::from(c.slot))
            .bind(at)
            .bind(at)
            .bind(c.next_rotation_at.map(ms))
            .bind(i64::from(c.manual))
            .bind(at)
            .bind(&c.rotation_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query)?;
            append_in!(&mut *tx, postgres, &c.event).await?;
            for sink in &c.sinks {
                want_in!(&mut *tx, &c.rotation_id, sink, at).await?;
            }
            release_in!(tx, &c.rotation_id, token).await
        })
    }

    async fn fail(&self, f: &FailAttempt, token: i64) -> Result<(), StoreError> {
        let at = ms(f.at);
        let (f, lease_ttl) = (f.clone(), self.lease_ttl);
        write_tx!(self, |tx, postgres| {
            fence!(tx, lease_ttl, &f.rotation_id, token).await?;
            close_attempt!(tx, f.attempt_id, token, "failed", Some(f.message.as_str())).await?;
            sqlx::query(
                "UPDATE local_rotations SET status = 'failed', last_rotation_attempted_at = $1, \
                 next_rotation_at = $2, is_last_rotation_manual = $3, last_message = $4, \
                 updated_at = $5 WHERE rotation_id = $6",
            )
            .bind(at)
            .bind(f.next_rotation_at.map(ms))
            .bind(i64::from(f.manual))
            .bind(&f.message)
            .bind(at)
            .bind(&f.rotation_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query)?;
            append_in!(&mut *tx, postgres, &f.event).await?;
            release_in!(tx, &f.rotation_id, token).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rotation::AttemptState;
    use crate::store::ReadOutbox as _;

    fn event(rotation: &str) -> crate::store::NewOutboxEvent {
        crate::store::NewOutboxEvent {
            event_id: Uuid::now_v7(),
            subject: "postgres-credentials.completed".into(),
            payload: b"{}".to_vec(),
            rotation_id: rotation.into(),
            trace_headers: Vec::new(),
            request_id: "q".into(),
            created_at: Utc::now(),
        }
    }

    crate::store::db::testing::on_each_backend!(
        fencing,
        super::leases_fence_and_commit_is_one_transaction
    );

    crate::store::db::testing::on_each_backend!(
        ensure_many,
        super::ensuring_rotations_creates_each_row_once
    );

    async fn ensuring_rotations_creates_each_row_once(store: &Store) {
        // More ids than one statement takes, some of them twice and one already stored.
        store
            .ensure_rotations(vec!["e-7".to_owned()])
            .await
            .expect("ensure");
        let ids: Vec<String> = (0..super::ENSURE_CHUNK + 10)
            .map(|i| format!("e-{i}"))
            .collect();
        store.ensure_rotations(ids.clone()).await.expect("ensure");
        store.ensure_rotations(ids.clone()).await.expect("again");
        for id in [&ids[0], &ids[super::ENSURE_CHUNK], &ids[ids.len() - 1]] {
            let state = store.rotation_state(id).await.expect("state").expect("row");
            assert_eq!(
                (state.status, state.active_index, state.next_rotation_at),
                (LocalStatus::Success, 0, None),
                "{id}"
            );
        }
        assert!(store.rotation_state("e-x").await.expect("state").is_none());
        assert!(
            store
                .rotations_with_credentials()
                .await
                .expect("ids")
                .is_empty()
        );
    }

    async fn leases_fence_and_commit_is_one_transaction(store: &Store) {
        store
            .ensure_rotations(vec!["r".to_owned()])
            .await
            .expect("ensure");
        let LeaseOutcome::Acquired(t1) = store.acquire("r", "a1", LEASE_TTL).await.expect("lease")
        else {
            panic!("the first lease is free");
        };
        assert_eq!(
            store.acquire("r", "a2", LEASE_TTL).await.expect("lease"),
            LeaseOutcome::HeldBy("a1".into())
        );
        let row = AttemptRow {
            attempt_id: Uuid::now_v7(),
            rotation_id: "r".into(),
            slot: 1,
            state: AttemptState::Prepared,
            key_id: "k".into(),
            candidate: vec![1, 2, 3],
            candidate_id: Some("app_b".into()),
            ids_before: Some(vec!["key-a".into(), "key-b".into()]),
            fencing_token: t1,
            scheduled: false,
            request_id: "q".into(),
            transient: 0,
            regenerations: 0,
            error: None,
            created_at: Utc::now(),
        };
        store.prepare(&row, Some("key-1")).await.expect("prepare");
        assert_eq!(
            store.attempt_for_key("r", "key-1").await.expect("key"),
            Some(row.attempt_id),
            "the key is stored with the intent"
        );
        let open = store.open_attempts().await.expect("open");
        assert_eq!(open.len(), 1);
        assert!(
            store
                .unheld_open_attempts(Utc::now())
                .await
                .expect("open")
                .is_empty(),
            "an attempt under a live lease is not to be resumed"
        );
        let after_expiry = Utc::now() + LEASE_TTL + chrono::Duration::seconds(1);
        assert_eq!(
            store
                .unheld_open_attempts(after_expiry)
                .await
                .expect("open")
                .len(),
            1,
            "once its lease expires it is"
        );
        assert_eq!(
            store
                .open_attempt("r")
                .await
                .expect("open")
                .map(|a| a.attempt_id),
            Some(row.attempt_id)
        );
        assert!(store.open_attempt("other").await.expect("open").is_none());
        assert_eq!(
            open[0].ids_before, row.ids_before,
            "ids round-trip in order"
        );
        assert_eq!(open[0].candidate_id, row.candidate_id);

        // A crashed holder's lease is broken at start-up when the store is this process's
        // alone; a shared store's lease may be a live replica's, so it waits for release or
        // expiry. Either way the old token can no longer write.
        store.break_leases().await.expect("break");
        let mut taken = store.acquire("r", "a3", LEASE_TTL).await.expect("lease");
        if store.is_shared() {
            assert_eq!(taken, LeaseOutcome::HeldBy("a1".into()));
            store.release("r", t1).await.expect("release");
            taken = store.acquire("r", "a3", LEASE_TTL).await.expect("lease");
        }
        let LeaseOutcome::Acquired(t2) = taken else {
            panic!("a broken lease is free");
        };
        assert!(t2 > t1, "fencing tokens grow");
        let stale = AttemptRow {
            state: AttemptState::Applied,
            ..row.clone()
        };
        assert!(matches!(
            store.transition(&stale).await,
            Err(StoreError::LostLease)
        ));
        let commit = CommitAttempt {
            attempt_id: row.attempt_id,
            rotation_id: "r".into(),
            slot: 1,
            key_id: "k".into(),
            ciphertext: vec![9],
            credential_id: Some("app_b".into()),
            at: Utc::now(),
            next_rotation_at: None,
            manual: true,
            event: event("r"),
            sinks: Vec::new(),
        };
        assert!(matches!(
            store.commit(&commit, t1).await,
            Err(StoreError::LostLease)
        ));
        assert!(store.credentials("r").await.expect("creds").is_empty());
        assert_eq!(
            store.backlog().await.expect("backlog").depth,
            0,
            "no event leaked"
        );

        store.adopt(row.attempt_id, "r", t2).await.expect("adopt");
        store.commit(&commit, t2).await.expect("commit");
        assert!(
            matches!(
                store.acquire("r", "after", LEASE_TTL).await.expect("lease"),
                LeaseOutcome::Acquired(_)
            ),
            "COMMIT released the lease"
        );
        let state = store
            .rotation_state("r")
            .await
            .expect("state")
            .expect("row");
        assert_eq!(state.active_index, 1);
        let stored = store.credentials("r").await.expect("creds");
        assert_eq!(stored.len(), 1);
        assert_eq!(
            stored[0].id.as_deref(),
            Some("app_b"),
            "the id is stored with it"
        );
        assert_eq!(store.backlog().await.expect("backlog").depth, 1);
        assert!(store.open_attempts().await.expect("open").is_empty());
        assert!(store.open_attempt("r").await.expect("open").is_none());
        assert_eq!(
            store.rotations_with_credentials().await.expect("ids"),
            ["r".to_owned()].into_iter().collect()
        );
        let done = store
            .attempt(row.attempt_id)
            .await
            .expect("read")
            .expect("row");
        assert_eq!(done.state, AttemptState::Committed);
    }
}
