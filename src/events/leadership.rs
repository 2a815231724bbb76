//! Relay leadership: of the replicas sharing a store, only the one holding the relay lease
//! publishes, so two relays never race on the same rows.
//!
//! - **Terms.** A claim succeeds on a free or expired lease and starts a term with a new,
//!   larger fencing token. The leader renews every third of the TTL; a follower tries to claim
//!   as often, so a dead leader is replaced within TTL + TTL/3.
//! - **A leader stops on its own clock.** It publishes only while `valid_until` (the instant it
//!   sent its last successful claim or renewal, plus the TTL) lies ahead; a leader cut off from
//!   the store stops before any successor can claim.
//! - **Fenced marks.** Rows are marked sent in the same transaction that checks the term's
//!   token, so a deposed leader cannot move the outbox on. Its unmarked rows are found in the
//!   stream by the successor (`stored_since`) and marked, not published again.
//!
//! Leadership is shown in `/healthz` (`relay`: `leader` / `follower`) and as the
//! `rotator.events.relay_leader` gauge.

use std::time::Duration;

use tokio::time::Instant;

use crate::store::{RelayLease, RelayTerm, StoreError};
use crate::telemetry::{health, metrics};

/// The term this relay holds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Term {
    /// What the store gave at the claim.
    pub(super) term: RelayTerm,
    /// When this relay must stop publishing unless it renewed.
    pub(super) valid_until: Instant,
    /// When it renews next.
    renew_at: Instant,
    /// Whether the stream has been checked for the predecessor's unmarked events.
    pub(super) reconciled: bool,
}

/// This relay's view of the relay lease.
#[derive(Debug)]
pub(super) struct Leadership {
    holder: String,
    ttl: Duration,
    current: Option<Term>,
}

// === impl Leadership ===

impl Leadership {
    /// A follower named `holder`, claiming for `ttl` at a time.
    pub(super) fn new(holder: String, ttl: Duration) -> Self {
        health::report(health::RELAY, "follower", None);
        metrics::set_relay_leader(false);
        Self {
            holder,
            ttl,
            current: None,
        }
    }

    /// How often the lease is renewed, or claimed by a follower.
    pub(super) fn renew_interval(&self) -> Duration {
        self.ttl / 3
    }

    /// The term this relay holds now, renewing or claiming first when due; `None` while
    /// another replica leads.
    ///
    /// # Errors
    ///
    /// The store failed and no valid term is left.
    pub(super) async fn ensure<S: RelayLease>(
        &mut self,
        store: &S,
    ) -> Result<Option<Term>, StoreError> {
        let now = Instant::now();
        if let Some(term) = self.current {
            if now < term.renew_at && now < term.valid_until {
                return Ok(Some(term));
            }
            match store.renew_relay(term.term.token, self.ttl).await {
                Ok(()) => {
                    let renewed = self.current.insert(Term {
                        valid_until: now + self.ttl,
                        renew_at: now + self.renew_interval(),
                        ..term
                    });
                    return Ok(Some(*renewed));
                }
                Err(StoreError::LostLease) => {
                    tracing::warn!(
                        token = term.term.token,
                        "this relay lost the relay lease to another replica; it stops publishing"
                    );
                    self.step_down();
                }
                Err(error) if Instant::now() < term.valid_until => {
                    tracing::warn!(%error, "cannot renew the relay lease; publishing while it lasts");
                    return Ok(Some(term));
                }
                Err(error) => {
                    self.step_down();
                    return Err(error);
                }
            }
        }
        let Some(claimed) = store.claim_relay(&self.holder, self.ttl).await? else {
            return Ok(None);
        };
        tracing::info!(
            token = claimed.token,
            holder = %self.holder,
            "this replica's relay now publishes the outbox"
        );
        health::report(health::RELAY, "leader", None);
        metrics::set_relay_leader(true);
        let term = Term {
            term: claimed,
            valid_until: now + self.ttl,
            renew_at: now + self.renew_interval(),
            reconciled: false,
        };
        Ok(Some(*self.current.insert(term)))
    }

    /// Records that the current term's stream check is done.
    pub(super) fn reconciled(&mut self) {
        if let Some(term) = &mut self.current {
            term.reconciled = true;
        }
    }

    /// Forgets the current term (lost, or given up), returning its token.
    pub(super) fn step_down(&mut self) -> Option<i64> {
        let token = self.current.take().map(|t| t.term.token);
        if token.is_some() {
            health::report(health::RELAY, "follower", None);
            metrics::set_relay_leader(false);
        }
        token
    }

    /// The current term, without renewing.
    pub(super) fn current(&self) -> Option<Term> {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::{DateTime, Utc};

    use super::*;
    use crate::store::Delivery;

    /// A lease whose next answers the test chooses; counts renewals.
    #[derive(Default)]
    struct Scripted {
        renewals: Mutex<Vec<Result<(), StoreError>>>,
        renewed: Mutex<usize>,
    }

    impl RelayLease for Scripted {
        async fn claim_relay(
            &self,
            _holder: &str,
            _ttl: Duration,
        ) -> Result<Option<RelayTerm>, StoreError> {
            Ok(Some(RelayTerm {
                token: 7,
                marked_stream_seq: 0,
            }))
        }

        async fn renew_relay(&self, _token: i64, _ttl: Duration) -> Result<(), StoreError> {
            *self.renewed.lock().expect("lock") += 1;
            self.renewals.lock().expect("lock").pop().unwrap_or(Ok(()))
        }

        async fn release_relay(&self, _token: i64) -> Result<(), StoreError> {
            Ok(())
        }

        async fn mark_sent_in_term(
            &self,
            _token: i64,
            _deliveries: &[Delivery],
            _at: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            Ok(())
        }
    }

    const TTL: Duration = Duration::from_secs(9);

    #[tokio::test(start_paused = true)]
    async fn a_term_is_renewed_every_third_and_kept_through_a_store_error_while_valid() {
        let store = Scripted::default();
        let mut leadership = Leadership::new("me".into(), TTL);
        let term = leadership
            .ensure(&store)
            .await
            .expect("claim")
            .expect("leader");
        assert_eq!(term.term.token, 7);
        assert!(leadership.ensure(&store).await.expect("held").is_some());
        assert_eq!(
            *store.renewed.lock().expect("lock"),
            0,
            "no renewal before TTL/3"
        );

        tokio::time::advance(TTL / 3).await;
        store
            .renewals
            .lock()
            .expect("lock")
            .push(Err(StoreError::Corrupt("unreachable".into())));
        let kept = leadership.ensure(&store).await.expect("still valid");
        assert_eq!(kept.map(|t| t.valid_until), Some(term.valid_until));

        tokio::time::advance(TTL).await;
        store
            .renewals
            .lock()
            .expect("lock")
            .push(Err(StoreError::Corrupt("unreachable".into())));
        assert!(leadership.ensure(&store).await.is_err(), "expired: no term");
        assert!(leadership.current().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_lease_ends_the_term_and_the_next_claim_starts_a_new_one() {
        let store = Scripted::default();
        let mut leadership = Leadership::new("me".into(), TTL);
        let first = leadership
            .ensure(&store)
            .await
            .expect("claim")
            .expect("leader");
        leadership.reconciled();
        tokio::time::advance(TTL / 3).await;
        store
            .renewals
            .lock()
            .expect("lock")
            .push(Err(StoreError::LostLease));
        let next = leadership
            .ensure(&store)
            .await
            .expect("claim")
            .expect("leader");
        assert!(!next.reconciled, "a new term checks the stream again");
        assert!(next.valid_until > first.valid_until);
    }
}
