//! The relay killed between publish and mark-sent: the event was stored by JetStream but the
//! outbox still holds it, so the next relay publishes it again, and the stream's duplicate window
//! (`Nats-Msg-Id` = event id) keeps exactly one copy. Also: the trace headers travel.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rotator::config::{Config, NatsConfig};
use rotator::events::jetstream::JetStreamPublisher;
use rotator::events::publisher::Publisher as _;
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
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACESTATE: &str = "rojo=00f067aa0ba902b7";

/// A store whose `mark_sent` never returns: the relay process "dies" right after the ack.
#[derive(Debug, Clone)]
struct DiesBeforeMarkingSent {
    inner: Store,
    acked: mpsc::UnboundedSender<usize>,
}

impl ReadOutbox for DiesBeforeMarkingSent {
    async fn next_batch(
        &self,
        from: OutboxSeq,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        self.inner.next_batch(from, limit).await
    }

    async fn backlog(&self) -> Result<Backlog, StoreError> {
        self.inner.backlog().await
    }
}

impl RelayLease for DiesBeforeMarkingSent {
    async fn claim_relay(
        &self,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<RelayTerm>, StoreError> {
        self.inner.claim_relay(holder, ttl).await
    }

    async fn renew_relay(&self, token: i64, ttl: Duration) -> Result<(), StoreError> {
        self.inner.renew_relay(token, ttl).await
    }

    async fn release_relay(&self, token: i64) -> Result<(), StoreError> {
        self.inner.release_relay(token).await
    }

    async fn mark_sent_in_term(
        &self,
        _token: i64,
        deliveries: &[Delivery],
        _at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let _ = self.acked.send(deliveries.len());
        std::future::pending().await
    }
}

impl AckOutbox for DiesBeforeMarkingSent {
    async fn mark_sent(
        &self,
        deliveries: &[Delivery],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.inner.mark_sent(deliveries, at).await
    }

    async fn mark_failed(&self, seqs: &[OutboxSeq], error: &str) -> Result<(), StoreError> {
        self.inner.mark_failed(seqs, error).await
    }

    async fn prune_delivered(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.inner.prune_delivered(before).await
    }

    async fn discard_unpublished_beyond(&self, keep: u64) -> Result<u64, StoreError> {
        self.inner.discard_unpublished_beyond(keep).await
    }
}

fn nats_config(names: &Names) -> NatsConfig {
    Config::load(None, &nats_env(SHARED_NATS, names))
        .expect("valid")
        .nats
        .expect("NATS configured")
}

fn attempt() -> AttemptRecord {
    AttemptRecord {
        event_id: uuid::Uuid::now_v7(),
        time: Utc::now(),
        rotation_id: uuid::Uuid::new_v4().to_string(),
        rotation_type: RotationType::AzureClientSecret,
        rotation: None,
        backend: Backend::Forwarded,
        trigger: Trigger::Manual,
        attempt_number: 1,
        duration: Duration::from_millis(250),
        request_id: "dedup-1".into(),
        upstream_req_id: None,
        failure: None,
        resolves_event_id: None,
    }
}

#[tokio::test]
async fn a_relay_killed_between_publish_and_mark_sent_is_deduplicated_by_jetstream() {
    let names = unique_names();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(dir.path()).await.expect("store");
    let record = attempt();
    let trace = vec![
        ("traceparent".to_owned(), TRACEPARENT.to_owned()),
        ("tracestate".to_owned(), TRACESTATE.to_owned()),
    ];
    store
        .append(outbox_row(&record, trace).expect("row"))
        .await
        .expect("append");
    let options = RelayOptions::new(&names.prefix, &Default::default());

    // First relay: publishes, gets the ack, and is killed while marking the row sent.
    let (acked_tx, mut acked_rx) = mpsc::unbounded_channel();
    let dying = Relay::new(
        DiesBeforeMarkingSent {
            inner: store.clone(),
            acked: acked_tx,
        },
        JetStreamPublisher::new(nats_config(&names)),
        Arc::new(Notify::new()),
        options.clone(),
    );
    let task = tokio::spawn(dying.run(CancellationToken::new()));
    let acked = tokio::time::timeout(Duration::from_secs(30), acked_rx.recv())
        .await
        .expect("the first relay got its ack within 30 s");
    assert_eq!(acked, Some(1));
    task.abort();
    assert!(task.await.expect_err("killed").is_cancelled());

    let first = stream_messages(SHARED_NATS, &names.stream).await;
    assert_eq!(first.len(), 1, "JetStream stored the event");
    assert_eq!(
        store.backlog().await.expect("backlog").depth,
        1,
        "the outbox still holds it"
    );

    // Second relay (the restarted process): publishes again; JetStream drops the copy.
    let publisher = JetStreamPublisher::new(nats_config(&names));
    publisher.prepare().await.expect("NATS is up");
    let relay = Relay::new(store.clone(), publisher, Arc::new(Notify::new()), options);
    assert_eq!(relay.publish_batch().await.expect("republish"), 1);
    assert_eq!(store.backlog().await.expect("backlog").depth, 0);
    assert_eq!(
        relay.publish_batch().await.expect("nothing left"),
        0,
        "nothing is published a third time"
    );

    let messages = wait_for_messages(SHARED_NATS, &names.stream, 1, Duration::from_secs(5)).await;
    assert_eq!(messages.len(), 1, "exactly one message for the event");
    let message = &messages[0];
    assert_eq!(message.sequence, first[0].sequence);
    assert_eq!(
        header(message, "Nats-Msg-Id"),
        Some(record.event_id.to_string().as_str())
    );
    assert_eq!(header(message, "traceparent"), Some(TRACEPARENT));
    assert_eq!(header(message, "tracestate"), Some(TRACESTATE));
    assert_eq!(header(message, "x-request-id"), Some("dedup-1"));
    let event =
        rotator::events::cloudevent::CloudEvent::from_bytes(&message.payload).expect("event");
    assert_eq!(event.traceparent.as_deref(), Some(TRACEPARENT));
    assert_eq!(
        event.data["attempt"]["traceId"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(
        message.subject.as_str(),
        format!("{}.azure-client-secret.completed", names.prefix)
    );

    delete_stream(SHARED_NATS, &names.stream).await;
}
