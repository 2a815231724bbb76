//! The local-rotation writes of many rotations at once, for the scheduler's batches
//! (`local::batch`): one lease statement, one PREPARE transaction and one COMMIT transaction
//! for up to a few dozen rotations, where the one-rotation path sends each rotation's own
//! statements. Each write is fenced per rotation exactly as the one-rotation writes are: a
//! rotation whose token no longer holds its lease is left out and reported missing from the
//! answer, and its neighbours are written.
//!
//! The statements name the rotations as row values, `(rotation_id, fencing_token) IN (VALUES
//! …)`, which SQLite and PostgreSQL both take, beside `rotation_id IN (…)`: without it SQLite
//! scans the whole table for a row-value match (10,000 leases per statement).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::Utc;

use super::db::{Columns, on_db, write_tx};
use super::deliveries::want_in;
use super::{Store, StoreError};
use crate::store::local::{AttemptRow, CommitAttempt, RotationState, state_name};

/// Rows of the batch read, per rotation.
#[derive(Debug, Clone)]
pub struct BatchRow {
    /// The rotation's state.
    pub state: RotationState,
    /// Whether any slot holds a credential.
    pub has_credential: bool,
    /// Whether an attempt is open (PREPARED, APPLIED or VERIFIED).
    pub open_attempt: bool,
}

/// Pushes `(<columns>) IN (VALUES (…), …)` with one tuple per item.
macro_rules! rows_in {
    ($query:expr, $columns:expr, $items:expr, |$row:ident, $item:ident| $push:expr) => {{
        $query.push(concat!("(", $columns, ") IN ("));
        $query.push_values($items, |mut $row, $item| {
            $push;
        });
        $query.push(")");
    }};
}

/// Pushes `<column> IN (…)` with one key per item: beside a row-value match it lets both
/// databases find the rows through the key's index instead of scanning the table.
macro_rules! keys_in {
    ($query:expr, $column:expr, $items:expr, |$item:ident| $key:expr) => {{
        $query.push(concat!($column, " IN ("));
        let mut keys = $query.separated(", ");
        for $item in $items {
            keys.push_bind($key);
        }
        $query.push(")");
    }};
}

/// Renews the leases `$held` (rotation id, token) inside `$tx`, returning the rotation ids whose
/// token still holds its lease (row-locked until the transaction ends, as `fence!` does).
macro_rules! fence_many {
    ($tx:expr, $ttl:expr, $held:expr) => {
        async {
            let mut query = sqlx::QueryBuilder::new("UPDATE local_leases SET expires_at = ");
            query.push_bind(Utc::now().timestamp_millis() + ttl_ms($ttl));
            query.push(" WHERE holder <> '' AND ");
            keys_in!(query, "rotation_id", $held, |item| item.0.clone());
            query.push(" AND ");
            rows_in!(query, "rotation_id, fencing_token", $held, |row, item| {
                row.push_bind(item.0.clone()).push_bind(item.1)
            });
            query.push(" RETURNING rotation_id");
            let held: Vec<String> = query
                .build_query_scalar()
                .fetch_all(&mut *$tx)
                .await
                .map_err(StoreError::query)?;
            Ok::<HashSet<String>, StoreError>(held.into_iter().collect())
        }
    };
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2)
}

// === impl Store (batches of local rotations) ===

impl Store {
    /// Takes the lease of each `(rotation id, holder)` that is free or expired, in one
    /// statement; returns the fencing token of each one taken. A rotation missing from the
    /// answer is held by another attempt.
    ///
    /// # Errors
    ///
    /// The store could not write (no lease was taken).
    pub async fn acquire_leases(
        &self,
        mut wanted: Vec<(String, String)>,
        ttl: Duration,
    ) -> Result<HashMap<String, i64>, StoreError> {
        if wanted.is_empty() {
            return Ok(HashMap::new());
        }
        // Rows in one order, so two replicas' batches lock shared leases in the same order on
        // PostgreSQL (no deadlock), and a rotation named twice is one row.
        wanted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        wanted.dedup_by(|a, b| a.0 == b.0);
        let now = Utc::now().timestamp_millis();
        write_tx!(self, one_effect, |tx, postgres| {
            let mut query = sqlx::QueryBuilder::new(
                "INSERT INTO local_leases (rotation_id, holder, fencing_token, expires_at) ",
            );
            query.push_values(&wanted, |mut row, (rotation_id, holder)| {
                row.push_bind(rotation_id.clone())
                    .push_bind(holder.clone())
                    .push_bind(1_i64)
                    .push_bind(now + ttl_ms(ttl));
            });
            // As the one-rotation acquire: a free or expired lease is taken with the next token;
            // a held one is left alone and not returned.
            query.push(
                " ON CONFLICT (rotation_id) DO UPDATE SET holder = excluded.holder, \
                 fencing_token = local_leases.fencing_token + 1, \
                 expires_at = excluded.expires_at \
                 WHERE local_leases.expires_at <= ",
            );
            query.push_bind(now);
            query.push(" OR local_leases.holder = '' RETURNING rotation_id, fencing_token");
            let rows = query
                .build()
                .fetch_all(&mut *tx)
                .await
                .map_err(StoreError::query)?;
            rows.iter()
                .map(|row| Ok((row.text("rotation_id")?, row.int("fencing_token")?)))
                .collect::<Result<HashMap<_, _>, StoreError>>()
        })
    }

    /// Extends each lease `(rotation id, token)` still held by its token by `ttl`, in one
    /// statement; returns the rotation ids whose lease was renewed.
    ///
    /// # Errors
    ///
    /// The store could not write.
    pub async fn renew_leases(
        &self,
        held: Vec<(String, i64)>,
        ttl: Duration,
    ) -> Result<HashSet<String>, StoreError> {
        if held.is_empty() {
            return Ok(HashSet::new());
        }
        write_tx!(self, one_effect, |tx, postgres| {
            fence_many!(tx, ttl, &held).await
        })
    }

    /// Frees each lease `(rotation id, token)` still held by its token, in one statement.
    ///
    /// # Errors
    ///
    /// The store could not write.
    pub async fn release_leases(&self, held: Vec<(String, i64)>) -> Result<(), StoreError> {
        if held.is_empty() {
            return Ok(());
        }
        write_tx!(self, one_effect, |tx, postgres| {
            let mut release = sqlx::QueryBuilder::new(
                "UPDATE local_leases SET holder = '', expires_at = 0 WHERE holder <> '' AND ",
            );
            keys_in!(release, "rotation_id", &held, |item| item.0.clone());
            release.push(" AND ");
            rows_in!(release, "rotation_id, fencing_token", &held, |row, item| {
                row.push_bind(item.0.clone()).push_bind(item.1)
            });
            release
                .build()
                .execute(&mut *tx)
                .await
                .map(drop)
                .map_err(StoreError::query)
        })
    }

    /// The state of each of `rotation_ids`, whether it holds a credential and whether an
    /// attempt of it is open, in one read. A rotation without a state row is missing.
    ///
    /// # Errors
    ///
    /// The store could not read.
    pub async fn batch_rows(
        &self,
        rotation_ids: Vec<String>,
    ) -> Result<HashMap<String, BatchRow>, StoreError> {
        if rotation_ids.is_empty() {
            return Ok(HashMap::new());
        }
        on_db!(self, |writer, reader, postgres| {
            let mut query = sqlx::QueryBuilder::new(
                "SELECT r.*, \
                 CAST(CASE WHEN EXISTS (SELECT 1 FROM local_credentials c \
                     WHERE c.rotation_id = r.rotation_id) THEN 1 ELSE 0 END AS BIGINT) \
                     AS has_credential, \
                 CAST(CASE WHEN EXISTS (SELECT 1 FROM local_attempts a \
                     WHERE a.rotation_id = r.rotation_id \
                     AND a.state IN ('prepared', 'applied', 'verified')) THEN 1 ELSE 0 END \
                     AS BIGINT) AS open_attempt \
                 FROM local_rotations r WHERE r.rotation_id IN (",
            );
            let mut ids = query.separated(", ");
            for id in &rotation_ids {
                ids.push_bind(id.clone());
            }
            query.push(")");
            let rows = query
                .build()
                .fetch_all(reader)
                .await
                .map_err(StoreError::query)?;
            rows.iter()
                .map(|row| {
                    Ok((
                        row.text("rotation_id")?,
                        BatchRow {
                            state: super::local_tables::decode_state(row)?,
                            has_credential: row.int("has_credential")? != 0,
                            open_attempt: row.int("open_attempt")? != 0,
                        },
                    ))
                })
                .collect()
        })
    }

    /// Stores the PREPARED attempts `rows` of scheduled rotations (no idempotency keys), each
    /// fenced by its token, in one transaction; returns the rotation ids prepared. A rotation
    /// missing from the answer lost its lease and wrote nothing.
    ///
    /// # Errors
    ///
    /// The store could not write (nothing was written).
    pub async fn prepare_many(&self, rows: Vec<AttemptRow>) -> Result<HashSet<String>, StoreError> {
        if rows.is_empty() {
            return Ok(HashSet::new());
        }
        let (now, lease_ttl) = (Utc::now().timestamp_millis(), self.lease_ttl);
        write_tx!(self, |tx, postgres| {
            let tokens: Vec<(String, i64)> = rows
                .iter()
                .map(|r| (r.rotation_id.clone(), r.fencing_token))
                .collect();
            let held = fence_many!(tx, lease_ttl, &tokens).await?;
            let prepared: Vec<&AttemptRow> = rows
                .iter()
                .filter(|r| held.contains(&r.rotation_id))
                .collect();
            if prepared.is_empty() {
                return Ok(held);
            }
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO local_attempts (attempt_id, rotation_id, slot, state, key_id, \
                 candidate, fencing_token, trigger_kind, request_id, transient, regenerations, \
                 created_at, updated_at, candidate_id, ids_before) ",
            );
            insert.push_values(&prepared, |mut b, row| {
                b.push_bind(row.attempt_id.to_string())
                    .push_bind(row.rotation_id.clone())
                    .push_bind(i64::from(row.slot))
                    .push_bind(state_name(row.state))
                    .push_bind(row.key_id.clone())
                    .push_bind(row.candidate.clone())
                    .push_bind(row.fencing_token)
                    .push_bind(if row.scheduled { "scheduled" } else { "manual" })
                    .push_bind(row.request_id.clone())
                    .push_bind(i64::from(row.transient))
                    .push_bind(i64::from(row.regenerations))
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(row.candidate_id.clone())
                    .push_bind(row.ids_before.as_ref().map(|ids| ids.join("\n")));
            });
            insert
                .build()
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query)?;
            let mut touch = sqlx::QueryBuilder::new("UPDATE local_rotations SET ");
            touch.push("last_rotation_attempted_at = ").push_bind(now);
            touch.push(", updated_at = ").push_bind(now);
            touch.push(" WHERE rotation_id IN (");
            let mut ids = touch.separated(", ");
            for row in &prepared {
                ids.push_bind(row.rotation_id.clone());
            }
            touch.push(")");
            touch
                .build()
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query)?;
            Ok::<HashSet<String>, StoreError>(held)
        })
    }

    /// COMMITs the attempts `commits`, each fenced by its token, in one transaction: per
    /// rotation exactly what [`AttemptStore::commit`](super::local::AttemptStore::commit)
    /// writes (slot credential, active index, version, timestamps, status, outbox event, each
    /// sink's wanted version, attempt state, the lease's release). Returns the rotation ids
    /// committed; a rotation missing from the answer lost its lease (or its attempt is no longer
    /// open) and wrote nothing.
    ///
    /// # Errors
    ///
    /// The store could not write (nothing was written).
    pub async fn commit_many(
        &self,
        commits: Vec<(CommitAttempt, i64)>,
    ) -> Result<HashSet<String>, StoreError> {
        if commits.is_empty() {
            return Ok(HashSet::new());
        }
        let lease_ttl = self.lease_ttl;
        write_tx!(self, |tx, postgres| {
            let now = Utc::now().timestamp_millis();
            let tokens: Vec<(String, i64)> = commits
                .iter()
                .map(|(c, token)| (c.rotation_id.clone(), *token))
                .collect();
            let held = fence_many!(tx, lease_ttl, &tokens).await?;
            let fenced: Vec<&(CommitAttempt, i64)> = commits
                .iter()
                .filter(|(c, _)| held.contains(&c.rotation_id))
                .collect();
            if fenced.is_empty() {
                return Ok(HashSet::new());
            }
            let mut close = sqlx::QueryBuilder::new(
                "UPDATE local_attempts SET state = 'committed', error = NULL, updated_at = ",
            );
            close.push_bind(now);
            close.push(" WHERE state IN ('prepared', 'applied', 'verified') AND ");
            keys_in!(close, "attempt_id", &fenced, |item| item
                .0
                .attempt_id
                .to_string());
            close.push(" AND ");
            rows_in!(close, "attempt_id, fencing_token", &fenced, |row, item| {
                row.push_bind(item.0.attempt_id.to_string())
                    .push_bind(item.1)
            });
            close.push(" RETURNING rotation_id");
            let closed: HashSet<String> = close
                .build_query_scalar::<String>()
                .fetch_all(&mut *tx)
                .await
                .map_err(StoreError::query)?
                .into_iter()
                .collect();
            let done: Vec<&CommitAttempt> = fenced
                .iter()
                .map(|(c, _)| c)
                .filter(|c| closed.contains(&c.rotation_id))
                .collect();
            if done.is_empty() {
                return Ok(closed);
            }
            let mut credentials = sqlx::QueryBuilder::new(
                "INSERT INTO local_credentials (rotation_id, slot, key_id, ciphertext, \
                 updated_at, credential_id) ",
            );
            credentials.push_values(&done, |mut row, c| {
                row.push_bind(c.rotation_id.clone())
                    .push_bind(i64::from(c.slot))
                    .push_bind(c.key_id.clone())
                    .push_bind(c.ciphertext.clone())
                    .push_bind(c.at.timestamp_millis())
                    .push_bind(c.credential_id.clone());
            });
            credentials.push(
                " ON CONFLICT (rotation_id, slot) DO UPDATE SET key_id = excluded.key_id, \
                 ciphertext = excluded.ciphertext, updated_at = excluded.updated_at, \
                 credential_id = excluded.credential_id",
            );
            credentials
                .build()
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query)?;
            // One UPDATE per distinct (slot, time, next rotation, manual): in a scheduled batch
            // that is one or two statements.
            let mut by_values: HashMap<_, Vec<&str>> = HashMap::new();
            for c in &done {
                by_values
                    .entry((c.slot, c.at, c.next_rotation_at, c.manual))
                    .or_default()
                    .push(c.rotation_id.as_str());
            }
            for ((slot, at, next, manual), ids) in by_values {
                let at = at.timestamp_millis();
                let mut update =
                    sqlx::QueryBuilder::new("UPDATE local_rotations SET active_index = ");
                update.push_bind(i64::from(slot));
                update.push(", status = 'success', version = version + 1, last_rotated_at = ");
                update.push_bind(at);
                update.push(", last_rotation_attempted_at = ").push_bind(at);
                update
                    .push(", next_rotation_at = ")
                    .push_bind(next.map(|t| t.timestamp_millis()));
                update
                    .push(", is_last_rotation_manual = ")
                    .push_bind(i64::from(manual));
                update
                    .push(", last_message = NULL, updated_at = ")
                    .push_bind(at);
                update.push(" WHERE rotation_id IN (");
                let mut list = update.separated(", ");
                for id in ids {
                    list.push_bind(id.to_owned());
                }
                update.push(")");
                update
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query)?;
            }
            super::outbox::append_many_in!(&mut *tx, postgres, done.iter().map(|c| &c.event))
                .await?;
            for c in &done {
                for sink in &c.sinks {
                    want_in!(&mut *tx, &c.rotation_id, sink, c.at.timestamp_millis()).await?;
                }
            }
            let mut release = sqlx::QueryBuilder::new(
                "UPDATE local_leases SET holder = '', expires_at = 0 WHERE holder <> '' AND ",
            );
            let released: Vec<_> = fenced
                .iter()
                .filter(|(c, _)| closed.contains(&c.rotation_id))
                .collect();
            keys_in!(release, "rotation_id", &released, |item| item
                .0
                .rotation_id
                .clone());
            release.push(" AND ");
            rows_in!(
                release,
                "rotation_id, fencing_token",
                &released,
                |row, item| { row.push_bind(item.0.rotation_id.clone()).push_bind(item.1) }
            );
            release
                .build()
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query)?;
            Ok::<HashSet<String>, StoreError>(closed)
        })
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::rotation::AttemptState;
    use crate::store::local::{
        AttemptStore as _, LeaseOutcome, LeaseStore as _, RotationStateStore as _,
    };
    use crate::store::{LEASE_TTL, ReadOutbox as _};

    crate::store::db::testing::on_each_backend!(
        fenced_per_rotation,
        super::a_batch_fences_each_rotation_by_its_own_token
    );

    fn attempt(rotation_id: &str, token: i64) -> AttemptRow {
        AttemptRow {
            attempt_id: Uuid::now_v7(),
            rotation_id: rotation_id.to_owned(),
            slot: 1,
            state: AttemptState::Prepared,
            key_id: "k".into(),
            candidate: vec![7, 7, 7],
            candidate_id: Some(format!("{rotation_id}-user-1")),
            ids_before: None,
            fencing_token: token,
            scheduled: true,
            request_id: "q".into(),
            transient: 0,
            regenerations: 0,
            error: None,
            created_at: Utc::now(),
        }
    }

    fn commit(row: &AttemptRow) -> CommitAttempt {
        let at = Utc::now();
        CommitAttempt {
            attempt_id: row.attempt_id,
            rotation_id: row.rotation_id.clone(),
            slot: row.slot,
            key_id: row.key_id.clone(),
            ciphertext: row.candidate.clone(),
            credential_id: row.candidate_id.clone(),
            at,
            next_rotation_at: Some(at + chrono::Duration::days(30)),
            manual: false,
            event: crate::store::NewOutboxEvent {
                event_id: Uuid::now_v7(),
                subject: "redis-credentials.completed".into(),
                payload: b"{}".to_vec(),
                rotation_id: row.rotation_id.clone(),
                trace_headers: Vec::new(),
                request_id: "q".into(),
                created_at: at,
            },
            sinks: Vec::new(),
        }
    }

    /// Three rotations, one held by another attempt: the batch takes two leases; a PREPARE and
    /// a COMMIT with a stale token write nothing for that rotation and everything for the other.
    async fn a_batch_fences_each_rotation_by_its_own_token(store: &Store) {
        let ids: Vec<String> = (0..3).map(|i| format!("batch-{i}")).collect();
        store.ensure_rotations(ids.clone()).await.expect("ensure");
        let LeaseOutcome::Acquired(_) = store
            .acquire(&ids[2], "elsewhere", LEASE_TTL)
            .await
            .expect("lease")
        else {
            panic!("the lease is free");
        };
        let wanted = ids
            .iter()
            .map(|id| (id.clone(), format!("a-{id}")))
            .collect();
        let tokens = store
            .acquire_leases(wanted, LEASE_TTL)
            .await
            .expect("leases");
        assert_eq!(tokens.len(), 2, "{tokens:?}");
        assert!(!tokens.contains_key(&ids[2]), "a held lease is not taken");
        let (t0, t1) = (tokens[&ids[0]], tokens[&ids[1]]);

        let rows = store.batch_rows(ids.clone()).await.expect("rows");
        assert_eq!(rows.len(), 3);
        assert!(rows.values().all(|r| !r.has_credential && !r.open_attempt));

        let (a0, stale) = (attempt(&ids[0], t0), attempt(&ids[1], t1 + 100));
        let prepared = store
            .prepare_many(vec![a0.clone(), stale])
            .await
            .expect("prepare");
        assert_eq!(prepared, [ids[0].clone()].into_iter().collect());
        let rows = store.batch_rows(ids.clone()).await.expect("rows");
        assert!(rows[&ids[0]].open_attempt && !rows[&ids[1]].open_attempt);
        assert!(rows[&ids[0]].state.last_rotation_attempted_at.is_some());
        let a1 = attempt(&ids[1], t1);
        store.prepare_many(vec![a1.clone()]).await.expect("prepare");

        let renewed = store
            .renew_leases(
                vec![
                    (ids[0].clone(), t0),
                    (ids[1].clone(), t1),
                    (ids[2].clone(), 999),
                ],
                LEASE_TTL,
            )
            .await
            .expect("renew");
        assert_eq!(renewed.len(), 2, "only held tokens renew: {renewed:?}");

        let mut stale_commit = commit(&a1);
        stale_commit.event.event_id = Uuid::now_v7();
        let committed = store
            .commit_many(vec![(commit(&a0), t0), (stale_commit, t1 + 100)])
            .await
            .expect("commit");
        assert_eq!(committed, [ids[0].clone()].into_iter().collect());

        let state = store
            .rotation_state(&ids[0])
            .await
            .expect("state")
            .expect("row");
        assert_eq!(state.active_index, 1);
        assert!(state.next_rotation_at.is_some());
        assert_eq!(store.credentials(&ids[0]).await.expect("creds").len(), 1);
        assert!(store.open_attempt(&ids[0]).await.expect("open").is_none());
        assert!(
            matches!(
                store
                    .acquire(&ids[0], "next", LEASE_TTL)
                    .await
                    .expect("lease"),
                LeaseOutcome::Acquired(_)
            ),
            "COMMIT released the lease"
        );
        // The stale COMMIT wrote nothing: no credential, the attempt open, the lease still held.
        assert!(store.credentials(&ids[1]).await.expect("creds").is_empty());
        assert_eq!(
            store
                .open_attempt(&ids[1])
                .await
                .expect("open")
                .map(|a| a.attempt_id),
            Some(a1.attempt_id)
        );
        assert_eq!(
            store
                .acquire(&ids[1], "next", LEASE_TTL)
                .await
                .expect("lease"),
            LeaseOutcome::HeldBy(format!("a-{}", ids[1]))
        );
        assert_eq!(store.backlog().await.expect("backlog").depth, 1);

        // A stale token frees nothing; the holder's frees the lease.
        for (token, freed) in [(t1 + 100, false), (t1, true)] {
            store
                .release_leases(vec![(ids[1].clone(), token)])
                .await
                .expect("release");
            let taken = store
                .acquire(&ids[1], "next", LEASE_TTL)
                .await
                .expect("lease");
            assert_eq!(
                matches!(taken, LeaseOutcome::Acquired(_)),
                freed,
                "token {token}"
            );
        }
    }
}
