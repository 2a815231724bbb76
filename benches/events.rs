//! Events pipeline: commit → JetStream ack latency and backlog drain rate, through the real
//! SQLite outbox and relay, against raw JetStream publish+ack of the same messages in the same run.
//!
//! Run: `cargo bench --bench events` (needs NATS with JetStream on 127.0.0.1:4222, or set
//! `BENCH_NATS_URL`). It prints Markdown tables for docs/benchmarks.md.
//!
//! - Latency: one event at a time (commit, then wait for its ack before the next), the idle-path
//!   latency a lone rotation sees. Commit = the outbox `append` returned (the row is fsynced);
//!   ack = the relay's `PublishAck` future resolved. Baseline: publish + await ack per message.
//! - Drain: 10,000 events already in the outbox (as after an outage), the relay's production
//!   loop started, timed until the last row is marked sent. Events come from 1,000 rotations
//!   (10 each, interleaved) and, as a worst case, from one rotation (one event per batch).
//!   Baseline: the same 10,000 messages published in pipelined batches of 256 with no store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;
use rotator::config::{Config, EventsConfig, NatsConfig};
use rotator::events::EventsError;
use rotator::events::jetstream::JetStreamPublisher;
use rotator::events::publisher::{Acked, OutgoingMessage, Publisher, Stored};
use rotator::events::recorder::outbox_row;
use rotator::events::{Relay, RelayOptions};
use rotator::proto::{Backend, RotationType, Trigger};
use rotator::rotation::AttemptRecord;
use rotator::store::{NewOutboxEvent, ReadOutbox as _, Store, WriteOutbox as _};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const LATENCY_EVENTS: usize = 2_000;
const DRAIN_EVENTS: usize = 10_000;
const BATCH: usize = 256;

/// Records when each message's ack resolved.
struct Timed<P> {
    inner: P,
    acks: mpsc::UnboundedSender<(String, Instant)>,
}

impl<P> Publisher for Timed<P>
where
    P: Publisher,
    P::Ack: 'static,
{
    type Ack = BoxFuture<'static, Result<Acked, EventsError>>;

    async fn prepare(&self) -> Result<(), EventsError> {
        self.inner.prepare().await
    }

    async fn send(&self, message: OutgoingMessage) -> Result<Self::Ack, EventsError> {
        let id = message.message_id.clone();
        let ack = self.inner.send(message).await?;
        let acks = self.acks.clone();
        Ok(Box::pin(async move {
            let acked = ack.await;
            if acked.is_ok() {
                let _ = acks.send((id, Instant::now()));
            }
            acked
        }))
    }

    async fn stored_since(&self, after: u64, limit: usize) -> Result<Vec<Stored>, EventsError> {
        self.inner.stored_since(after, limit).await
    }
}

struct Names {
    prefix: String,
    stream: String,
}

fn names(tag: &str) -> Names {
    let id = uuid::Uuid::new_v4().simple().to_string();
    Names {
        prefix: format!("bench.{id}.events"),
        stream: format!("BENCH_{tag}_{id}"),
    }
}

fn nats_config(url: &str, names: &Names) -> NatsConfig {
    let env = HashMap::from([
        ("ROTATOR_NATS_URL".to_owned(), url.to_owned()),
        (
            "ROTATOR_NATS_SUBJECT_PREFIX".to_owned(),
            names.prefix.clone(),
        ),
        ("ROTATOR_NATS_STREAM_NAME".to_owned(), names.stream.clone()),
    ]);
    Config::load(None, &env)
        .expect("valid")
        .nats
        .expect("nats configured")
}

fn row(rotation: usize, n: usize) -> NewOutboxEvent {
    let record = AttemptRecord {
        event_id: uuid::Uuid::now_v7(),
        time: Utc::now(),
        rotation_id: format!("00000000-0000-4000-8000-{rotation:012}"),
        rotation_type: RotationType::PostgresCredentials,
        rotation: None,
        backend: Backend::Forwarded,
        trigger: Trigger::Manual,
        attempt_number: 1,
        duration: Duration::from_millis(120),
        request_id: format!("bench-{n}"),
        upstream_req_id: None,
        failure: None,
        resolves_event_id: None,
    };
    let trace = vec![(
        "traceparent".to_owned(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
    )];
    outbox_row(&record, trace).expect("row")
}

fn message(prefix: &str, row: &NewOutboxEvent) -> OutgoingMessage {
    let mut headers = vec![
        (
            "content-type".to_owned(),
            rotator::events::cloudevent::CONTENT_TYPE.to_owned(),
        ),
        ("x-request-id".to_owned(), row.request_id.clone()),
    ];
    headers.extend(row.trace_headers.iter().cloned());
    OutgoingMessage {
        subject: format!("{prefix}.{}", row.subject),
        message_id: row.event_id.to_string(),
        headers,
        payload: row.payload.clone(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

async fn delete_stream(url: &str, stream: &str) {
    let client = async_nats::connect(url).await.expect("connect");
    let _ = async_nats::jetstream::new(client)
        .delete_stream(stream)
        .await;
}

/// Commit → ack through the outbox and relay, one event at a time.
async fn outbox_latency(url: &str) -> Vec<Duration> {
    let names = names("LAT");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(dir.path()).await.expect("store");
    let (acks_tx, mut acks) = mpsc::unbounded_channel();
    let publisher = Timed {
        inner: JetStreamPublisher::new(nats_config(url, &names)),
        acks: acks_tx,
    };
    let wake = Arc::new(Notify::new());
    let relay = Relay::new(
        store.clone(),
        publisher,
        Arc::clone(&wake),
        RelayOptions::new(&names.prefix, &EventsConfig::default()),
    );
    let cancel = CancellationToken::new();
    let task = tokio::spawn(relay.run(cancel.clone()));
    let mut latencies = Vec::with_capacity(LATENCY_EVENTS);
    for n in 0..LATENCY_EVENTS + 100 {
        let row = row(n, n);
        let id = row.event_id.to_string();
        store.append(row).await.expect("append");
        let committed = Instant::now();
        wake.notify_one();
        let (acked_id, acked_at) = acks.recv().await.expect("an ack");
        assert_eq!(acked_id, id);
        // The first 100 warm up the connection, the stream and SQLite's page cache.
        if n >= 100 {
            latencies.push(acked_at - committed);
        }
    }
    cancel.cancel();
    task.await.expect("relay stops");
    delete_stream(url, &names.stream).await;
    latencies.sort();
    latencies
}

/// Publish + await ack per message, no store.
async fn raw_latency(url: &str) -> Vec<Duration> {
    let names = names("RAWLAT");
    let publisher = JetStreamPublisher::new(nats_config(url, &names));
    publisher.prepare().await.expect("NATS is up");
    let mut latencies = Vec::with_capacity(LATENCY_EVENTS);
    for n in 0..LATENCY_EVENTS + 100 {
        let message = message(&names.prefix, &row(n, n));
        let started = Instant::now();
        publisher
            .send(message)
            .await
            .expect("send")
            .await
            .expect("ack");
        if n >= 100 {
            latencies.push(started.elapsed());
        }
    }
    delete_stream(url, &names.stream).await;
    latencies.sort();
    latencies
}

/// Fills the outbox with `DRAIN_EVENTS` rows from `rotations` rotations, then starts the relay
/// and times until the last row is marked sent.
async fn outbox_drain(url: &str, rotations: usize) -> Duration {
    let names = names("DRAIN");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(dir.path()).await.expect("store");
    for n in 0..DRAIN_EVENTS {
        store.append(row(n % rotations, n)).await.expect("append");
    }
    let publisher = JetStreamPublisher::new(nats_config(url, &names));
    publisher.prepare().await.expect("NATS is up");
    let relay = Relay::new(
        store.clone(),
        publisher,
        Arc::new(Notify::new()),
        RelayOptions::new(&names.prefix, &EventsConfig::default()),
    );
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(relay.run(cancel.clone()));
    while store.backlog().await.expect("backlog").depth > 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    cancel.cancel();
    task.await.expect("relay stops");
    delete_stream(url, &names.stream).await;
    elapsed
}

/// The same 10,000 messages, pipelined in batches of 256, no store.
async fn raw_drain(url: &str) -> Duration {
    let names = names("RAWDRAIN");
    let publisher = JetStreamPublisher::new(nats_config(url, &names));
    publisher.prepare().await.expect("NATS is up");
    let messages: Vec<_> = (0..DRAIN_EVENTS)
        .map(|n| message(&names.prefix, &row(n % 1000, n)))
        .collect();
    let started = Instant::now();
    for chunk in messages.chunks(BATCH) {
        let mut acks = Vec::with_capacity(chunk.len());
        for message in chunk {
            acks.push(publisher.send(message.clone()).await.expect("send"));
        }
        for ack in acks {
            ack.await.expect("ack");
        }
    }
    let elapsed = started.elapsed();
    delete_stream(url, &names.stream).await;
    elapsed
}

fn main() {
    let url = std::env::var("BENCH_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // Alternate the two paths so machine noise hits both alike; keep the median round.
        let rounds = 3;
        let mut lat: Vec<(Vec<Duration>, Vec<Duration>)> = Vec::new();
        for _ in 0..rounds {
            let raw = raw_latency(&url).await;
            let outbox = outbox_latency(&url).await;
            lat.push((outbox, raw));
        }
        lat.sort_by_key(|(outbox, _)| percentile(outbox, 0.99));
        let (outbox, raw) = &lat[rounds / 2];
        println!("Commit → JetStream ack, one event at a time ({LATENCY_EVENTS} events, median of {rounds} rounds by p99):");
        println!();
        println!("| path | p50 (ms) | p99 (ms) | max (ms) |");
        println!("|---|---|---|---|");
        for (name, l) in [("outbox + relay", outbox), ("raw publish + ack", raw)] {
            println!(
                "| {name} | {} | {} | {} |",
                ms(percentile(l, 0.5)),
                ms(percentile(l, 0.99)),
                ms(*l.last().expect("samples"))
            );
        }
        let ratio = |p| percentile(outbox, p).as_secs_f64() / percentile(raw, p).as_secs_f64();
        println!(
            "| ratio (outbox / raw) | {:.2} | {:.2} | |",
            ratio(0.5),
            ratio(0.99)
        );

        let mut drains = Vec::new();
        for _ in 0..rounds {
            let raw = raw_drain(&url).await;
            let many = outbox_drain(&url, 1000).await;
            let one = outbox_drain(&url, 1).await;
            drains.push((many, one, raw));
        }
        drains.sort_by_key(|(many, _, _)| *many);
        let (many, one, raw) = drains[rounds / 2];
        let rate = |d: Duration| DRAIN_EVENTS as f64 / d.as_secs_f64();
        println!();
        println!("Backlog drain, {DRAIN_EVENTS} events already waiting (median of {rounds} rounds):");
        println!();
        println!("| path | time (s) | events/s | ratio to raw |");
        println!("|---|---|---|---|");
        for (name, d) in [
            ("outbox + relay, 1,000 rotations", many),
            ("outbox + relay, 1 rotation (worst case)", one),
            ("raw pipelined publish + ack", raw),
        ] {
            println!(
                "| {name} | {:.3} | {:.0} | {:.2} |",
                d.as_secs_f64(),
                rate(d),
                rate(d) / rate(raw)
            );
        }
    });
}
