//! Two relays on one PostgreSQL store: only the lease holder publishes, and when it freezes
//! after publishing but before marking (a stopped process, a cut network), its successor takes
//! over once the lease expires, finds those events in the stream and marks them instead of
//! publishing them again: one message per event even with a duplicate window far shorter than
//! the takeover (1 s here), so nothing is left to JetStream's de-duplication. And a leader cut
//! off from NATS (but not from the store) hands the lease to a replica that reaches NATS.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rotator::config::{Config, NatsConfig};
use rotator::events::EventsError;
use rotator::events::jetstream::JetStreamPublisher;
use rotator::events::publisher::{OutgoingMessage, Publisher, Stored};
use rotator::events::recorder::outbox_row;
use rotator::events::{Relay, RelayOptions};
use rotator::proto::{Backend, RotationType, Trigger};
use rotator::rotation::AttemptRecord;
use rotator::store::{
    AckOutbox, Backlog, Delivery, OutboxEvent, OutboxSeq, ReadOutbox, RelayLease, RelayTerm, Store,
    StoreError, WriteOutbox as _,
};
use rotator_testkit::events::{
    Names, SHARED_NATS, delete_stream, header, nats_env, stream_messages, unique_names,
    wait_for_messages,
};
use rotator_testkit::scratch_postgres::ScratchDatabase;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const EVENTS: usize = 24;
const ROTATIONS: usize = 4;
const LEASE_TTL: Duration = Duration::from_secs(3);

/// A store that freezes at the first fenced mark: from then on no call returns, as if the
/// leader's process stopped right after its acks.
#[derive(Debug, Clone)]
struct FreezesAtMark {
    inner: Store,
    acked: mpsc::UnboundedSender<usize>,
    frozen: Arc<AtomicBool>,
}

impl FreezesAtMark {
    async fn gate(&self) {
        if self.frozen.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
    }
}

impl ReadOutbox for FreezesAtMark {
    async fn next_batch(
        &self,
        from: OutboxSeq,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        self.gate().await;
        self.inner.next_batch(from, limit).await
    }

    async fn backlog(&self) -> Result<Backlog, StoreError> {
        self.gate().await;
        self.inner.backlog().await
    }
}

impl AckOutbox for FreezesAtMark {
    async fn mark_sent(
        &self,
        deliveries: &[Delivery],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.gate().await;
        self.inner.mark_sent(deliveries, at).await
    }

    async fn mark_failed(&self, seqs: &[OutboxSeq], error: &str) -> Result<(), StoreError> {
        self.gate().await;
        self.inner.mark_failed(seqs, error).await
    }

    async fn prune_delivered(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.gate().await;
        self.inner.prune_delivered(before).await
    }

    async fn discard_unpublished_beyond(&self, keep: u64) -> Result<u64, StoreError> {
        self.gate().await;
        self.inner.discard_unpublished_beyond(keep).await
    }
}

impl RelayLease for FreezesAtMark {
    async fn claim_relay(
        &self,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<RelayTerm>, StoreError> {
        self.gate().await;
        self.inner.claim_relay(holder, ttl).await
    }

    async fn renew_relay(&self, token: i64, ttl: Duration) -> Result<(), StoreError> {
        self.gate().await;
        self.inner.renew_relay(token, ttl).await
    }

    async fn release_relay(&self, token: i64) -> Result<(), StoreError> {
        self.gate().await;
        self.inner.release_relay(token).await
    }

    async fn mark_sent_in_term(
        &self,
        _token: i64,
        deliveries: &[Delivery],
        _at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.frozen.store(true, Ordering::SeqCst);
        let _ = self.acked.send(deliveries.len());
        std::future::pending().await
    }
}

fn nats_config(names: &Names) -> NatsConfig {
    let mut env = nats_env(SHARED_NATS, names);
    env.insert(
        "ROTATOR_NATS_STREAM_DUPLICATE_WINDOW_SECONDS".to_owned(),
        "1".to_owned(),
    );
    Config::load(None, &env)
        .expect("valid")
        .nats
        .expect("NATS configured")
}

fn attempt(rotation: usize) -> AttemptRecord {
    AttemptRecord {
        event_id: uuid::Uuid::now_v7(),
        time: Utc::now(),
        rotation_id: format!("00000000-0000-4000-8000-00000000000{rotation}"),
        rotation_type: RotationType::AzureClientSecret,
        rotation: None,
        backend: Backend::Forwarded,
        trigger: Trigger::Manual,
        attempt_number: 1,
        duration: Duration::from_millis(10),
        request_id: format!("leader-{rotation}"),
        upstream_req_id: None,
        failure: None,
        resolves_event_id: None,
    }
}

fn options(names: &Names, holder: &str) -> RelayOptions {
    let mut options = RelayOptions::new(&names.prefix, &Default::default());
    options.holder = holder.to_owned();
    options.lease_ttl = LEASE_TTL;
    options
}

async fn lease_holder(store: &ScratchDatabase) -> String {
    sqlx::query_scalar("SELECT holder FROM relay_lease")
        .fetch_one(&store.pool().await)
        .await
        .expect("the lease row")
}

/// Waits until the outbox is empty.
async fn wait_drained(store: &Store, within: Duration) {
    let deadline = Instant::now() + within;
    while store.backlog().await.expect("backlog").depth > 0 {
        assert!(
            Instant::now() < deadline,
            "the outbox drains within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_marks_what_a_dead_leader_published_and_never_publishes_it_again() {
    let names = unique_names();
    let database = ScratchDatabase::create().await;
    let store = Store::open_postgres(&database.url).await.expect("store");
    let mut ids = Vec::new();
    let mut rotation_of = HashMap::new();
    for n in 0..EVENTS {
        let record = attempt(n % ROTATIONS);
        ids.push(record.event_id.to_string());
        rotation_of.insert(record.event_id.to_string(), record.rotation_id.clone());
        store
            .append(outbox_row(&record, Vec::new()).expect("row"))
            .await
            .expect("append");
    }

    // Leader A publishes everything, then freezes while marking.
    let (acked_tx, mut acked_rx) = mpsc::unbounded_channel();
    let a = Relay::new(
        FreezesAtMark {
            inner: store.clone(),
            acked: acked_tx,
            frozen: Arc::default(),
        },
        JetStreamPublisher::new(nats_config(&names)),
        Arc::new(Notify::new()),
        options(&names, "replica-a"),
    );
    let a = tokio::spawn(a.run(CancellationToken::new()));
    let mut acked = 0;
    while acked < EVENTS {
        acked += tokio::time::timeout(Duration::from_secs(30), acked_rx.recv())
            .await
            .expect("leader A gets its acks within 30 s")
            .expect("A runs");
    }
    let frozen_at = Instant::now();
    wait_for_messages(SHARED_NATS, &names.stream, EVENTS, Duration::from_secs(5)).await;

    // B starts while A's lease runs: it waits, then takes over, finds the events in the stream
    // and marks them. By then the duplicate window is long past, so a publish by B would
    // double them in the stream.
    let cancel_b = CancellationToken::new();
    let b = Relay::new(
        store.clone(),
        JetStreamPublisher::new(nats_config(&names)),
        Arc::new(Notify::new()),
        options(&names, "replica-b"),
    );
    let b = tokio::spawn(b.run(cancel_b.clone()));
    assert_eq!(lease_holder(&database).await, "replica-a", "A still leads");
    wait_drained(&store, LEASE_TTL * 4).await;
    let takeover = frozen_at.elapsed();
    assert_eq!(lease_holder(&database).await, "replica-b");
    a.abort();

    // B publishes what comes next.
    let later = attempt(0);
    store
        .append(outbox_row(&later, Vec::new()).expect("row"))
        .await
        .expect("append");
    ids.push(later.event_id.to_string());
    rotation_of.insert(later.event_id.to_string(), later.rotation_id.clone());
    wait_drained(&store, Duration::from_secs(30)).await;

    let messages = stream_messages(SHARED_NATS, &names.stream).await;
    let in_stream: Vec<String> = messages
        .iter()
        .filter_map(|m| header(m, "Nats-Msg-Id").map(str::to_owned))
        .collect();
    let unique: HashSet<&String> = in_stream.iter().collect();
    assert_eq!(
        unique.len(),
        in_stream.len(),
        "no event is in the stream twice"
    );
    assert_eq!(
        unique,
        ids.iter().collect::<HashSet<_>>(),
        "every event is in the stream"
    );
    let order = |events: &[String]| -> HashMap<String, Vec<String>> {
        let mut by_rotation: HashMap<String, Vec<String>> = HashMap::new();
        for event in events {
            by_rotation
                .entry(rotation_of[event].clone())
                .or_default()
                .push(event.clone());
        }
        by_rotation
    };
    assert_eq!(order(&in_stream), order(&ids), "per-rotation order holds");
    eprintln!("takeover and reconciliation took {takeover:?} (lease TTL {LEASE_TTL:?})");

    cancel_b.cancel();
    b.await.expect("B stops");
    assert_eq!(
        lease_holder(&database).await,
        "",
        "B gives the lease up when it stops"
    );
    store.close().await;
    delete_stream(SHARED_NATS, &names.stream).await;
}

/// A publisher whose NATS a test can cut: every call fails as with a lost connection.
#[derive(Debug)]
struct Cuttable {
    inner: JetStreamPublisher,
    cut: Arc<AtomicBool>,
}

impl Cuttable {
    fn check(&self) -> Result<(), EventsError> {
        if self.cut.load(Ordering::SeqCst) {
            Err(EventsError::Disconnected)
        } else {
            Ok(())
        }
    }
}

impl Publisher for Cuttable {
    type Ack = <JetStreamPublisher as Publisher>::Ack;

    async fn prepare(&self) -> Result<(), EventsError> {
        self.check()?;
        self.inner.prepare().await
    }

    async fn send(&self, message: OutgoingMessage) -> Result<Self::Ack, EventsError> {
        self.check()?;
        self.inner.send(message).await
    }

    async fn stored_since(&self, after: u64, limit: usize) -> Result<Vec<Stored>, EventsError> {
        self.check()?;
        self.inner.stored_since(after, limit).await
    }
}

/// Waits until `holder` holds the relay lease.
async fn wait_holder(store: &ScratchDatabase, holder: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while lease_holder(store).await != holder {
        assert!(
            Instant::now() < deadline,
            "{holder} holds the relay lease within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_nats_hands_the_lease_to_a_replica_that_reaches_it() {
    let names = unique_names();
    let database = ScratchDatabase::create().await;
    let store = Store::open_postgres(&database.url).await.expect("store");

    // A leads alone; B, started after, follows.
    let cut = Arc::new(AtomicBool::new(false));
    let cancel = CancellationToken::new();
    let a = Relay::new(
        store.clone(),
        Cuttable {
            inner: JetStreamPublisher::new(nats_config(&names)),
            cut: cut.clone(),
        },
        Arc::new(Notify::new()),
        options(&names, "replica-a"),
    );
    let a = tokio::spawn(a.run(cancel.clone()));
    wait_holder(&database, "replica-a", Duration::from_secs(30)).await;
    let b = Relay::new(
        store.clone(),
        JetStreamPublisher::new(nats_config(&names)),
        Arc::new(Notify::new()),
        options(&names, "replica-b"),
    );
    let b = tokio::spawn(b.run(cancel.clone()));

    // A loses NATS while events keep coming: B takes the lease and publishes them all.
    cut.store(true, Ordering::SeqCst);
    let cut_at = Instant::now();
    let mut ids = HashSet::new();
    for n in 0..EVENTS {
        let record = attempt(n % ROTATIONS);
        ids.insert(record.event_id.to_string());
        store
            .append(outbox_row(&record, Vec::new()).expect("row"))
            .await
            .expect("append");
    }
    wait_holder(&database, "replica-b", LEASE_TTL * 6).await;
    let handed_over = cut_at.elapsed();
    wait_drained(&store, Duration::from_secs(30)).await;
    let in_stream: Vec<String> = stream_messages(SHARED_NATS, &names.stream)
        .await
        .iter()
        .filter_map(|m| header(m, "Nats-Msg-Id").map(str::to_owned))
        .collect();
    assert_eq!(in_stream.len(), ids.len(), "one message per event");
    assert_eq!(
        in_stream.iter().cloned().collect::<HashSet<_>>(),
        ids,
        "every event is in the stream"
    );

    // A, back on NATS, stays a follower while B leads.
    cut.store(false, Ordering::SeqCst);
    tokio::time::sleep(LEASE_TTL).await;
    assert_eq!(
        lease_holder(&database).await,
        "replica-b",
        "B keeps leading"
    );
    eprintln!(
        "a leader cut off from NATS handed over after {handed_over:?} (lease TTL {LEASE_TTL:?})"
    );

    cancel.cancel();
    a.await.expect("A stops");
    b.await.expect("B stops");
    store.close().await;
    delete_stream(SHARED_NATS, &names.stream).await;
}
