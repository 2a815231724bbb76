//! The local-rotation tables on SQLite. Times are Unix milliseconds.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;
use sqlx::{Sqlite, Transaction};
use uuid::Uuid;

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::local::{
    AttemptRow, AttemptStore, CommitAttempt, FailAttempt, LeaseOutcome, LeaseStore, LocalStatus,
    RotationState, RotationStateStore, StoredCredential, parse_state, state_name,
};

/// How long a lease lasts past each fenced write.
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

// === impl SqliteStore (local) ===

impl SqliteStore {
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
        let id: Option<String> = sqlx::query_scalar(
            "SELECT attempt_id FROM local_idempotency_keys WHERE rotation_id = ? AND key = ?",
        )
        .bind(rotation_id)
        .bind(key)
        .fetch_optional(self.pool())
        .await
        .map_err(StoreError::query)?;
        id.map(|s| Uuid::parse_str(&s).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    /// Records that `key` of `rotation_id` names `attempt_id` (the first record wins).
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
        sqlx::query(
            "INSERT INTO local_idempotency_keys (rotation_id, key, attempt_id, created_at) \
             VALUES (?, ?, ?, ?) ON CONFLICT (rotation_id, key) DO NOTHING",
        )
        .bind(rotation_id)
        .bind(key)
        .bind(attempt_id.to_string())
        .bind(ms(Utc::now()))
        .execute(self.pool())
        .await
        .map_err(StoreError::query)?;
        Ok(())
    }

    /// Frees every lease. The SQLite store belongs to one process, so at start-up no other
    /// holder can be alive: a lease left by a crashed process is released at once instead of
    /// after its expiry. Tokens keep growing.
    ///
    /// # Errors
    ///
    /// The store could not write.
    pub async fn break_leases(&self) -> Result<(), StoreError> {
        sqlx::query("UPDATE local_leases SET holder = '', expires_at = 0")
            .execute(self.pool())
            .await
            .map_err(StoreError::query)?;
        Ok(())
    }
}

/// Renews the lease inside `tx` if `token` still holds it; otherwise [`StoreError::LostLease`].
async fn fence(
    tx: &mut Transaction<'_, Sqlite>,
    rotation_id: &str,
    token: i64,
) -> Result<(), StoreError> {
    let expires = ms(Utc::now()) + ttl_ms(LEASE_TTL);
    let done = sqlx::query(
        "UPDATE local_leases SET expires_at = ? WHERE rotation_id = ? AND fencing_token = ? \
         AND holder <> ''",
    )
    .bind(expires)
    .bind(rotation_id)
    .bind(token)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::query)?;
    if done.rows_affected() == 0 {
        Err(StoreError::LostLease)
    } else {
        Ok(())
    }
}

impl LeaseStore for SqliteStore {
    async fn acquire(
        &self,
        rotation_id: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<LeaseOutcome, StoreError> {
        let now = ms(Utc::now());
        let token: Option<i64> = sqlx::query_scalar(
            "INSERT INTO local_leases (rotation_id, holder, fencing_token, expires_at) \
             VALUES (?1, ?2, 1, ?3) \
             ON CONFLICT (rotation_id) DO UPDATE SET holder = excluded.holder, \
                 fencing_token = local_leases.fencing_token + 1, expires_at = excluded.expires_at \
             WHERE local_leases.expires_at <= ?4 OR local_leases.holder = '' \
             RETURNING fencing_token",
        )
        .bind(rotation_id)
        .bind(holder)
        .bind(now + ttl_ms(ttl))
        .bind(now)
        .fetch_optional(self.pool())
        .await
        .map_err(StoreError::query)?;
        if let Some(token) = token {
            return Ok(LeaseOutcome::Acquired(token));
        }
        let holder: Option<String> =
            sqlx::query_scalar("SELECT holder FROM local_leases WHERE rotation_id = ?")
                .bind(rotation_id)
                .fetch_optional(self.pool())
                .await
                .map_err(StoreError::query)?;
        Ok(LeaseOutcome::HeldBy(holder.unwrap_or_default()))
    }

    async fn release(&self, rotation_id: &str, token: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE local_leases SET holder = '', expires_at = 0 \
             WHERE rotation_id = ? AND fencing_token = ?",
        )
        .bind(rotation_id)
        .bind(token)
        .execute(self.pool())
        .await
        .map_err(StoreError::query)?;
        Ok(())
    }
}

fn decode_state(row: &SqliteRow) -> Result<RotationState, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(RotationState {
        active_index: u32::try_from(row.try_get::<i64, _>("active_index")?).unwrap_or(0),
        status: if status == "failed" {
            LocalStatus::Failed
        } else {
            LocalStatus::Success
        },
        last_rotated_at: time(row.try_get("last_rotated_at")?),
        last_rotation_attempted_at: time(row.try_get("last_rotation_attempted_at")?),
        next_rotation_at: time(row.try_get("next_rotation_at")?),
        is_last_rotation_manual: row.try_get::<i64, _>("is_last_rotation_manual")? != 0,
        last_message: row.try_get("last_message")?,
        created_at: time(row.try_get("created_at")?).unwrap_or_default(),
        updated_at: time(row.try_get("updated_at")?).unwrap_or_default(),
    })
}

impl RotationStateStore for SqliteStore {
    async fn ensure_rotation(
        &self,
        rotation_id: &str,
        next_rotation_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let now = ms(Utc::now());
        sqlx::query(
            "INSERT INTO local_rotations (rotation_id, next_rotation_at, created_at, updated_at) \
             VALUES (?, ?, ?, ?) ON CONFLICT (rotation_id) DO NOTHING",
        )
        .bind(rotation_id)
        .bind(next_rotation_at.map(ms))
        .bind(now)
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(StoreError::query)?;
        Ok(())
    }

    async fn rotation_state(&self, rotation_id: &str) -> Result<Option<RotationState>, StoreError> {
        let row = sqlx::query("SELECT * FROM local_rotations WHERE rotation_id = ?")
            .bind(rotation_id)
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::query)?;
        row.as_ref()
            .map(decode_state)
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    async fn credentials(&self, rotation_id: &str) -> Result<Vec<StoredCredential>, StoreError> {
        let rows = sqlx::query(
            "SELECT slot, key_id, ciphertext FROM local_credentials WHERE rotation_id = ? \
             ORDER BY slot",
        )
        .bind(rotation_id)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query)?;
        rows.iter()
            .map(|r| {
                Ok(StoredCredential {
                    slot: u32::try_from(r.try_get::<i64, _>("slot")?).unwrap_or(0),
                    key_id: r.try_get("key_id")?,
                    ciphertext: r.try_get("ciphertext")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    async fn due(&self, now: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT rotation_id FROM local_rotations \
             WHERE next_rotation_at IS NOT NULL AND next_rotation_at <= ? ORDER BY next_rotation_at",
        )
        .bind(ms(now))
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query)
    }
}

fn decode_attempt(row: &SqliteRow) -> Result<AttemptRow, StoreError> {
    let corrupt = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
    let id: String = row.try_get("attempt_id").map_err(corrupt)?;
    let state: String = row.try_get("state").map_err(corrupt)?;
    let trigger: String = row.try_get("trigger_kind").map_err(corrupt)?;
    Ok(AttemptRow {
        attempt_id: Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        rotation_id: row.try_get("rotation_id").map_err(corrupt)?,
        slot: u32::try_from(row.try_get::<i64, _>("slot").map_err(corrupt)?).unwrap_or(0),
        state: parse_state(&state)?,
        key_id: row.try_get("key_id").map_err(corrupt)?,
        candidate: row.try_get("candidate").map_err(corrupt)?,
        fencing_token: row.try_get("fencing_token").map_err(corrupt)?,
        scheduled: trigger == "scheduled",
        request_id: row.try_get("request_id").map_err(corrupt)?,
        transient: u32::try_from(row.try_get::<i64, _>("transient").map_err(corrupt)?).unwrap_or(0),
        regenerations: u32::try_from(row.try_get::<i64, _>("regenerations").map_err(corrupt)?)
            .unwrap_or(0),
        error: row.try_get("error").map_err(corrupt)?,
        created_at: time(row.try_get("created_at").map_err(corrupt)?).unwrap_or_default(),
    })
}

/// Closes an open attempt inside `tx`, fenced by its token; zero rows is a lost lease.
async fn close_attempt(
    tx: &mut Transaction<'_, Sqlite>,
    attempt_id: Uuid,
    token: i64,
    state: &str,
    error: Option<&str>,
) -> Result<(), StoreError> {
    let done = sqlx::query(
        "UPDATE local_attempts SET state = ?, error = ?, updated_at = ? \
         WHERE attempt_id = ? AND fencing_token = ? \
         AND state IN ('prepared', 'applied', 'verified')",
    )
    .bind(state)
    .bind(error)
    .bind(ms(Utc::now()))
    .bind(attempt_id.to_string())
    .bind(token)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::query)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::LostLease);
    }
    Ok(())
}

async fn append_event(
    tx: &mut Transaction<'_, Sqlite>,
    event: &crate::store::NewOutboxEvent,
) -> Result<(), StoreError> {
    let trace_headers = serde_json::to_string(&event.trace_headers)
        .map_err(|e| StoreError::Corrupt(format!("trace headers: {e}")))?;
    sqlx::query(
        "INSERT INTO outbox \
         (event_id, subject, payload, rotation_id, trace_headers, request_id, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(event.event_id.to_string())
    .bind(&event.subject)
    .bind(&event.payload)
    .bind(&event.rotation_id)
    .bind(trace_headers)
    .bind(&event.request_id)
    .bind(event.created_at.timestamp_micros())
    .execute(&mut **tx)
    .await
    .map_err(StoreError::query)?;
    Ok(())
}

impl AttemptStore for SqliteStore {
    async fn prepare(&self, row: &AttemptRow) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await.map_err(StoreError::query)?;
        fence(&mut tx, &row.rotation_id, row.fencing_token).await?;
        let now = ms(Utc::now());
        sqlx::query(
            "INSERT INTO local_attempts (attempt_id, rotation_id, slot, state, key_id, candidate, \
             fencing_token, trigger_kind, request_id, transient, regenerations, created_at, \
             updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query)?;
        sqlx::query(
            "UPDATE local_rotations SET last_rotation_attempted_at = ?, updated_at = ? \
             WHERE rotation_id = ?",
        )
        .bind(now)
        .bind(now)
        .bind(&row.rotation_id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query)?;
        tx.commit().await.map_err(StoreError::query)
    }

    async fn transition(&self, row: &AttemptRow) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await.map_err(StoreError::query)?;
        fence(&mut tx, &row.rotation_id, row.fencing_token).await?;
        let done = sqlx::query(
            "UPDATE local_attempts SET state = ?, key_id = ?, candidate = ?, transient = ?, \
             regenerations = ?, updated_at = ? \
             WHERE attempt_id = ? AND fencing_token = ? \
             AND state IN ('prepared', 'applied', 'verified')",
        )
        .bind(state_name(row.state))
        .bind(&row.key_id)
        .bind(&row.candidate)
        .bind(i64::from(row.transient))
        .bind(i64::from(row.regenerations))
        .bind(ms(Utc::now()))
        .bind(row.attempt_id.to_string())
        .bind(row.fencing_token)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::LostLease);
        }
        tx.commit().await.map_err(StoreError::query)
    }

    async fn adopt(
        &self,
        attempt_id: Uuid,
        rotation_id: &str,
        token: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await.map_err(StoreError::query)?;
        fence(&mut tx, rotation_id, token).await?;
        sqlx::query("UPDATE local_attempts SET fencing_token = ? WHERE attempt_id = ?")
            .bind(token)
            .bind(attempt_id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query)?;
        tx.commit().await.map_err(StoreError::query)
    }

    async fn open_attempts(&self) -> Result<Vec<AttemptRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM local_attempts WHERE state IN ('prepared', 'applied', 'verified') \
             ORDER BY created_at",
        )
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query)?;
        rows.iter().map(decode_attempt).collect()
    }

    async fn attempt(&self, attempt_id: Uuid) -> Result<Option<AttemptRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM local_attempts WHERE attempt_id = ?")
            .bind(attempt_id.to_string())
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::query)?;
        row.as_ref().map(decode_attempt).transpose()
    }

    async fn commit(&self, c: &CommitAttempt, token: i64) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await.map_err(StoreError::query)?;
        fence(&mut tx, &c.rotation_id, token).await?;
        close_attempt(&mut tx, c.attempt_id, token, "committed", None).await?;
        let at = ms(c.at);
        sqlx::query(
            "INSERT INTO local_credentials (rotation_id, slot, key_id, ciphertext, updated_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (rotation_id, slot) DO UPDATE SET \
             key_id = excluded.key_id, ciphertext = excluded.ciphertext, \
             updated_at = excluded.updated_at",
        )
        .bind(&c.rotation_id)
        .bind(i64::from(c.slot))
        .bind(&c.key_id)
        .bind(&c.ciphertext)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query)?;
        sqlx::query(
            "UPDATE local_rotations SET active_index = ?, status = 'success', \
             last_rotated_at = ?, last_rotation_attempted_at = ?, next_rotation_at = ?, \
             is_last_rotation_manual = ?, last_message = NULL, updated_at = ? \
             WHERE rotation_id = ?",
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
        append_event(&mut tx, &c.event).await?;
        tx.commit().await.map_err(StoreError::query)
    }

    async fn fail(&self, f: &FailAttempt, token: i64) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await.map_err(StoreError::query)?;
        fence(&mut tx, &f.rotation_id, token).await?;
        close_attempt(&mut tx, f.attempt_id, token, "failed", Some(&f.message)).await?;
        let at = ms(f.at);
        sqlx::query(
            "UPDATE local_rotations SET status = 'failed', last_rotation_attempted_at = ?, \
             next_rotation_at = ?, is_last_rotation_manual = ?, last_message = ?, updated_at = ? \
             WHERE rotation_id = ?",
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
        append_event(&mut tx, &f.event).await?;
        tx.commit().await.map_err(StoreError::query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::attempt::AttemptState;
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

    #[tokio::test]
    async fn leases_fence_and_commit_is_one_transaction() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        store.ensure_rotation("r", None).await.expect("ensure");
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
            fencing_token: t1,
            scheduled: false,
            request_id: "q".into(),
            transient: 0,
            regenerations: 0,
            error: None,
            created_at: Utc::now(),
        };
        store.prepare(&row).await.expect("prepare");
        assert_eq!(store.open_attempts().await.expect("open").len(), 1);

        // A crashed holder's lease is broken; the old token can no longer write.
        store.break_leases().await.expect("break");
        let LeaseOutcome::Acquired(t2) = store.acquire("r", "a3", LEASE_TTL).await.expect("lease")
        else {
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
            at: Utc::now(),
            next_rotation_at: None,
            manual: true,
            event: event("r"),
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
        let state = store
            .rotation_state("r")
            .await
            .expect("state")
            .expect("row");
        assert_eq!(state.active_index, 1);
        assert_eq!(store.credentials("r").await.expect("creds").len(), 1);
        assert_eq!(store.backlog().await.expect("backlog").depth, 1);
        assert!(store.open_attempts().await.expect("open").is_empty());
        let done = store
            .attempt(row.attempt_id)
            .await
            .expect("read")
            .expect("row");
        assert_eq!(done.state, AttemptState::Committed);
    }
}
