//! The relay lease on [`Store`]: one row (`relay_lease`), taken with an upsert that only
//! succeeds on a free or expired lease, and a fencing token that every mark-sent checks in its
//! own transaction. Times are Unix milliseconds.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::db::on_db;
use super::outbox::mark_sent_in;
use super::{Delivery, RelayLease, RelayTerm, Store, StoreError};

/// The lease row's name.
const RELAY: &str = "relay";

fn expiry(ttl: Duration) -> i64 {
    let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
    Utc::now().timestamp_millis().saturating_add(ttl)
}

fn seq(stream_seq: i64) -> u64 {
    u64::try_from(stream_seq).unwrap_or_default()
}

// === impl Store: RelayLease ===

impl RelayLease for Store {
    async fn claim_relay(
        &self,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<RelayTerm>, StoreError> {
        // On a store of this process alone every lease found is this process's (or a crashed
        // predecessor's): taken at once.
        let free_before = if self.is_shared() {
            Utc::now().timestamp_millis()
        } else {
            i64::MAX
        };
        on_db!(self, |writer, reader, postgres| {
            // One statement: of two concurrent claimants the row lock lets one update; the other
            // re-checks the WHERE against the new holder and gets no row.
            let term: Option<(i64, i64)> = sqlx::query_as(
                "INSERT INTO relay_lease (name, holder, fencing_token, expires_at) \
                 VALUES ($1, $2, 1, $3) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                     fencing_token = relay_lease.fencing_token + 1, \
                     expires_at = excluded.expires_at \
                 WHERE relay_lease.expires_at <= $4 OR relay_lease.holder = '' \
                     OR relay_lease.holder = excluded.holder \
                 RETURNING fencing_token, stream_seq",
            )
            .bind(RELAY)
            .bind(holder)
            .bind(expiry(ttl))
            .bind(free_before)
            .fetch_optional(writer)
            .await
            .map_err(StoreError::query)?;
            let Some((token, leased_seq)) = term else {
                return Ok(None);
            };
            // Rows marked before the lease existed (an upgrade) count too.
            let outbox_seq: i64 =
                sqlx::query_scalar("SELECT COALESCE(MAX(stream_seq), 0) FROM outbox")
                    .fetch_one(writer)
                    .await
                    .map_err(StoreError::query)?;
            Ok(Some(RelayTerm {
                token,
                marked_stream_seq: seq(leased_seq.max(outbox_seq)),
            }))
        })
    }

    async fn renew_relay(&self, token: i64, ttl: Duration) -> Result<(), StoreError> {
        on_db!(self, |writer, reader, postgres| {
            let done = sqlx::query(
                "UPDATE relay_lease SET expires_at = $1 \
                 WHERE name = $2 AND fencing_token = $3 AND holder <> ''",
            )
            .bind(expiry(ttl))
            .bind(RELAY)
            .bind(token)
            .execute(writer)
            .await
            .map_err(StoreError::query)?;
            if done.rows_affected() == 0 {
                Err(StoreError::LostLease)
            } else {
                Ok(())
            }
        })
    }

    async fn release_relay(&self, token: i64) -> Result<(), StoreError> {
        on_db!(self, |writer, reader, postgres| {
            sqlx::query(
                "UPDATE relay_lease SET holder = '', expires_at = 0 \
                 WHERE name = $1 AND fencing_token = $2",
            )
            .bind(RELAY)
            .bind(token)
            .execute(writer)
            .await
            .map(|_| ())
            .map_err(StoreError::query)
        })
    }

    async fn mark_sent_in_term(
        &self,
        token: i64,
        deliveries: &[Delivery],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let highest = deliveries
            .iter()
            .map(|d| d.stream_seq)
            .max()
            .unwrap_or_default();
        let highest = i64::try_from(highest).unwrap_or(i64::MAX);
        on_db!(self, |writer, reader, postgres| {
            let mut tx = writer.begin().await.map_err(StoreError::query)?;
            // The fence row-locks the lease until the commit: a claim waits for this mark and
            // then reads the sequence it raised.
            let fenced = sqlx::query(
                "UPDATE relay_lease \
                 SET stream_seq = CASE WHEN stream_seq < $1 THEN $1 ELSE stream_seq END \
                 WHERE name = $2 AND fencing_token = $3 AND holder <> ''",
            )
            .bind(highest)
            .bind(RELAY)
            .bind(token)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query)?;
            if fenced.rows_affected() == 0 {
                return Err(StoreError::LostLease);
            }
            mark_sent_in!(tx, deliveries, at).await?;
            tx.commit().await.map_err(StoreError::query)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AckOutbox as _, ReadOutbox as _, WriteOutbox as _};

    fn event(n: u32) -> crate::store::NewOutboxEvent {
        crate::store::NewOutboxEvent {
            event_id: uuid::Uuid::now_v7(),
            subject: "postgres-credentials.completed".to_owned(),
            payload: format!("{{\"n\":{n}}}").into_bytes(),
            rotation_id: format!("r{n}"),
            trace_headers: Vec::new(),
            request_id: String::new(),
            created_at: Utc::now(),
        }
    }

    const TTL: Duration = Duration::from_secs(60);

    /// Claim, renew, takeover after expiry, fenced marks, release, and the marked sequence a
    /// successor starts from.
    async fn relay_lease_contract(store: &Store) {
        store.append(event(1)).await.expect("append");
        store.append(event(2)).await.expect("append");
        let rows = store.next_batch(0, 10).await.expect("batch");
        let first = store
            .claim_relay("a", TTL)
            .await
            .expect("claim")
            .expect("free");
        assert_eq!(first.marked_stream_seq, 0);
        store.renew_relay(first.token, TTL).await.expect("renew");
        let mark = |seq, stream_seq| [Delivery { seq, stream_seq }];
        store
            .mark_sent_in_term(first.token, &mark(rows[0].seq, 41), Utc::now())
            .await
            .expect("the leader marks");

        let by_b = store.claim_relay("b", TTL).await.expect("claim");
        if store.is_shared() {
            assert_eq!(by_b, None, "a running lease is not taken");
            // Expire it: a's TTL of zero from now.
            store
                .renew_relay(first.token, Duration::ZERO)
                .await
                .expect("renew");
        }
        let second = match by_b {
            Some(term) => term,
            None => store
                .claim_relay("b", TTL)
                .await
                .expect("claim")
                .expect("expired"),
        };
        assert!(second.token > first.token, "a takeover gets a larger token");
        assert_eq!(second.marked_stream_seq, 41);
        assert!(matches!(
            store
                .mark_sent_in_term(first.token, &mark(rows[1].seq, 42), Utc::now())
                .await,
            Err(StoreError::LostLease)
        ));
        assert_eq!(
            store.backlog().await.expect("backlog").depth,
            1,
            "nothing was marked"
        );
        assert!(matches!(
            store.renew_relay(first.token, TTL).await,
            Err(StoreError::LostLease)
        ));
        store
            .mark_sent_in_term(second.token, &mark(rows[1].seq, 40), Utc::now())
            .await
            .expect("the new leader marks");
        store
            .release_relay(first.token)
            .await
            .expect("a stale release");
        assert_eq!(
            store.claim_relay("c", TTL).await.expect("claim").is_some(),
            !store.is_shared(),
            "a stale release frees nothing"
        );
        store.release_relay(second.token).await.expect("release");
        let third = store
            .claim_relay("c", TTL)
            .await
            .expect("claim")
            .expect("released");
        assert_eq!(
            third.marked_stream_seq, 41,
            "the marked sequence never goes back"
        );

        // Rows marked before the lease existed count too.
        store.append(event(3)).await.expect("append");
        let row = store.next_batch(0, 10).await.expect("batch")[0].seq;
        store
            .mark_sent(&mark(row, 99), Utc::now())
            .await
            .expect("mark");
        let fourth = store
            .claim_relay("c", TTL)
            .await
            .expect("claim")
            .expect("own lease");
        assert_eq!(fourth.marked_stream_seq, 99);
    }

    crate::store::db::testing::on_each_backend!(relay_lease, super::relay_lease_contract);
}
