//! rotator's metrics: one OpenTelemetry meter whose readings are always available as Prometheus
//! text (the admin listener's `/metrics`) and, when an OTLP metrics endpoint is configured, also
//! pushed over OTLP.
//!
//! | OpenTelemetry name | kind | Prometheus name |
//! |---|---|---|
//! | `rotator.rotations` | counter | `rotator_rotations_total` |
//! | `rotator.rotation.duration` (s) | histogram | `rotator_rotation_duration_seconds` |
//! | `rpc.server.call.duration` (s) | histogram | `rpc_server_call_duration_seconds` |
//! | `rotator.rpc.active_calls` | up-down counter | `rotator_rpc_active_calls` |
//! | `http.client.request.duration` (s) | histogram | `http_client_request_duration_seconds` |
//! | `rotator.upstream.token.operations` | observable counter | `rotator_upstream_token_operations_total` |
//! | `rotator.outbox.depth` | observable gauge | `rotator_outbox_depth` |
//! | `rotator.outbox.oldest_age` (s) | observable gauge | `rotator_outbox_oldest_age_seconds` |
//! | `rotator.events.published` | counter | `rotator_events_published_total` |
//! | `rotator.events.publish_failures` | counter | `rotator_events_publish_failures_total` |
//! | `rotator.lease.takeovers` | counter | `rotator_lease_takeovers_total` |
//! | `rotator.deliveries` | counter | `rotator_deliveries_total` |
//! | `rotator.handover.grace_expired` | counter | `rotator_handover_grace_expired_total` |
//! | `rotator.rotations.overdue` | observable gauge | `rotator_rotations_overdue` |
//! | `rotator.events.relay_leader` | observable gauge | `rotator_events_relay_leader` |
//!
//! Every series a dashboard queries exists from start, at zero where nothing happened, so no
//! panel says "No data" on a quiet or fresh server: counters are seeded with `add(0)` (the
//! rotation counter per enabled type and outcome, by [`seed_rotation_types`]), gauges without a
//! registered source read 0, and a histogram nothing was recorded in yet is rendered as an empty
//! one (OpenTelemetry has no way to create a histogram series without a recording).
//!
//! The instruments are process-wide (like the OpenTelemetry global meter provider), so the api,
//! engine, upstream client and events relay record without handles being threaded through
//! every constructor. Recording costs an atomic update or a short lock; nothing blocks on export.
//! Sources for gauges (outbox, overdue rotations, token counts) are callbacks registered by
//! their owners and read at collection time; they must not block.

use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _, UpDownCounter};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use prometheus::Encoder as _;

/// Bucket boundaries (seconds) for calls and upstream requests: 5 ms to 2 min.
const CALL_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Bucket boundaries (seconds) for whole rotations, which may take minutes at a provider.
const ROTATION_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// A histogram's Prometheus family, to render it empty before its first recording.
struct HistogramFamily {
    name: &'static str,
    help: &'static str,
    buckets: &'static [f64],
}

const HISTOGRAMS: &[HistogramFamily] = &[
    HistogramFamily {
        name: "rotator_rotation_duration_seconds",
        help: "How long rotation attempts took",
        buckets: ROTATION_BUCKETS,
    },
    HistogramFamily {
        name: "rpc_server_call_duration_seconds",
        help: "How long gRPC calls took, by method and status code",
        buckets: CALL_BUCKETS,
    },
    HistogramFamily {
        name: "http_client_request_duration_seconds",
        help: "How long upstream HTTP requests took, by status",
        buckets: CALL_BUCKETS,
    },
];

impl HistogramFamily {
    /// Appends the family with one series of count 0 to a text exposition.
    fn render_empty(&self, text: &mut String) {
        use std::fmt::Write as _;
        let name = self.name;
        let _ = writeln!(text, "# HELP {name} {}", self.help);
        let _ = writeln!(text, "# TYPE {name} histogram");
        for bound in self.buckets {
            let _ = writeln!(text, "{name}_bucket{{le=\"{bound}\"}} 0");
        }
        let _ = writeln!(text, "{name}_bucket{{le=\"+Inf\"}} 0");
        let _ = writeln!(text, "{name}_sum 0");
        let _ = writeln!(text, "{name}_count 0");
    }
}

/// The outbox's state, as its owner reports it at collection time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OutboxStats {
    /// Events written but not yet acknowledged by JetStream.
    pub depth: u64,
    /// Age of the oldest unpublished event; `None` when the outbox is empty.
    pub oldest_age: Option<Duration>,
}

/// How a rotation attempt ended, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The rotation happened (`RotationCompleted`).
    Success,
    /// It did not, or its outcome is unknown (`RotationFailed`).
    Failure,
}

type OutboxSource = Arc<dyn Fn() -> OutboxStats + Send + Sync>;
type CountSource = Arc<dyn Fn() -> u64 + Send + Sync>;
type TokenSource = Arc<dyn Fn() -> (u64, u64) + Send + Sync>;

/// The gauge sources; read by callbacks at collection time.
#[derive(Default)]
struct Sources {
    outbox: RwLock<Option<OutboxSource>>,
    overdue: RwLock<Option<CountSource>>,
    tokens: RwLock<Option<TokenSource>>,
}

/// The meter provider, the Prometheus registry it feeds, and every instrument.
pub struct Metrics {
    provider: SdkMeterProvider,
    registry: prometheus::Registry,
    /// True when an OTLP reader is attached.
    otlp: bool,
    rotations: Counter<u64>,
    rotation_duration: Histogram<f64>,
    rpc_duration: Histogram<f64>,
    rpc_active: UpDownCounter<i64>,
    upstream_duration: Histogram<f64>,
    published: Counter<u64>,
    publish_failures: Counter<u64>,
    discarded: Counter<u64>,
    lease_takeovers: Counter<u64>,
    deliveries: Counter<u64>,
    handover_grace_expired: Counter<u64>,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();
/// 1 while this replica's relay holds the relay lease; 0 from start.
static RELAY_LEADER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static SOURCES: OnceLock<Sources> = OnceLock::new();

fn sources() -> &'static Sources {
    SOURCES.get_or_init(Sources::default)
}

/// The process-wide metrics. Before [`install`] runs, this creates them with the Prometheus
/// reader only (so tests and tools that never configure telemetry still count).
pub fn global() -> &'static Metrics {
    METRICS.get_or_init(|| Metrics::build(Resource::builder_empty().build(), None))
}

/// Installs the process-wide metrics with `resource` and, when given, an OTLP reader. Returns
/// `false` when they already existed (the OTLP reader is then not attached).
pub(crate) fn install(
    resource: Resource,
    otlp: Option<PeriodicReader<opentelemetry_otlp::MetricExporter>>,
) -> bool {
    let mut installed = false;
    METRICS.get_or_init(|| {
        installed = true;
        Metrics::build(resource, otlp)
    });
    installed
}

// === impl Metrics ===

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("otlp", &self.otlp).finish()
    }
}

impl Metrics {
    fn build(
        resource: Resource,
        otlp: Option<PeriodicReader<opentelemetry_otlp::MetricExporter>>,
    ) -> Self {
        let registry = prometheus::Registry::new();
        let mut builder = SdkMeterProvider::builder().with_resource(resource);
        match opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .scope_info_enabled(false)
            .build()
        {
            Ok(exporter) => builder = builder.with_reader(exporter),
            Err(error) => tracing::error!(%error, "cannot build the Prometheus metrics reader"),
        }
        let has_otlp = otlp.is_some();
        if let Some(reader) = otlp {
            builder = builder.with_reader(reader);
        }
        let provider = builder.build();
        let meter = provider.meter("rotator");
        register_observables(&meter);
        let metrics = Self {
            rotations: meter
                .u64_counter("rotator.rotations")
                .with_description("Rotation attempts, by type, backend and outcome")
                .with_unit("{rotation}")
                .build(),
            rotation_duration: meter
                .f64_histogram("rotator.rotation.duration")
                .with_description("How long rotation attempts took")
                .with_unit("s")
                .with_boundaries(ROTATION_BUCKETS.to_vec())
                .build(),
            rpc_duration: meter
                .f64_histogram("rpc.server.call.duration")
                .with_description("How long gRPC calls took, by method and status code")
                .with_unit("s")
                .with_boundaries(CALL_BUCKETS.to_vec())
                .build(),
            rpc_active: meter
                .i64_up_down_counter("rotator.rpc.active_calls")
                .with_description("gRPC calls being served")
                .with_unit("{call}")
                .build(),
            upstream_duration: meter
                .f64_histogram("http.client.request.duration")
                .with_description("How long upstream HTTP requests took, by status")
                .with_unit("s")
                .with_boundaries(CALL_BUCKETS.to_vec())
                .build(),
            published: meter
                .u64_counter("rotator.events.published")
                .with_description("Events acknowledged by JetStream")
                .with_unit("{event}")
                .build(),
            publish_failures: meter
                .u64_counter("rotator.events.publish_failures")
                .with_description("Event publish attempts that failed (the relay retries)")
                .with_unit("{failure}")
                .build(),
            discarded: meter
                .u64_counter("rotator.events.discarded")
                .with_description(
                    "Unpublished events deleted because no NATS is configured and the outbox \
                     held more than events.unpublished_cap_without_nats",
                )
                .with_unit("{event}")
                .build(),
            lease_takeovers: meter
                .u64_counter("rotator.lease.takeovers")
                .with_description("Rotation leases taken over from an expired holder")
                .with_unit("{takeover}")
                .build(),
            deliveries: {
                let counter = meter
                    .u64_counter("rotator.deliveries")
                    .with_description(
                        "Tries to deliver a committed credential to a sink, by outcome",
                    )
                    .with_unit("{try}")
                    .build();
                // Exported from the start, like `rotator.events.discarded`.
                counter.add(0, &[]);
                counter
            },
            handover_grace_expired: meter
                .u64_counter("rotator.handover.grace_expired")
                .with_description(
                    "Committed versions whose handover grace ended before every named consumer \
                     confirmed them, so a rotation went ahead; by rotation type",
                )
                .with_unit("{version}")
                .build(),
            provider,
            registry,
            otlp: has_otlp,
        };
        metrics.seed_zeros();
        metrics
    }

    /// Creates the series the dashboard reads at zero (adding 0 changes no count).
    fn seed_zeros(&self) {
        for event_type in ["completed", "failed"] {
            self.published
                .add(0, &[KeyValue::new("rotator.event_type", event_type)]);
        }
        self.publish_failures.add(0, &[]);
        self.discarded.add(0, &[]);
        self.lease_takeovers.add(0, &[]);
        self.rpc_active.add(0, &[]);
        self.handover_grace_expired.add(0, &[]);
    }

    /// Whether readings are also pushed over OTLP.
    pub fn exports_otlp(&self) -> bool {
        self.otlp
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric; a histogram nothing was
    /// recorded in yet appears empty (count 0).
    pub fn render_prometheus(&self) -> String {
        let mut out = Vec::new();
        if let Err(error) = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out)
        {
            tracing::warn!(%error, "cannot encode metrics as Prometheus text");
        }
        let mut text = String::from_utf8(out).unwrap_or_default();
        for histogram in HISTOGRAMS {
            if !text.contains(&format!("# TYPE {} histogram", histogram.name)) {
                histogram.render_empty(&mut text);
            }
        }
        text
    }

    /// Pushes pending readings to the OTLP endpoint, if any. Blocks: call off the async runtime.
    pub(crate) fn flush_blocking(&self) {
        if self.otlp
            && let Err(error) = self.provider.force_flush()
        {
            tracing::warn!(%error, "flushing OTLP metrics failed");
        }
    }

    /// Flushes and stops the OTLP reader. Blocks: call off the async runtime.
    pub(crate) fn shutdown_blocking(&self, timeout: Duration) {
        if self.otlp
            && let Err(error) = self.provider.shutdown_with_timeout(timeout)
        {
            tracing::warn!(%error, "shutting down OTLP metrics failed");
        }
    }
}

fn register_observables(meter: &Meter) {
    meter
        .u64_observable_counter("rotator.upstream.token.operations")
        .with_description("Infisical logins and token renewals")
        .with_unit("{operation}")
        .with_callback(|observer| {
            // Without Infisical nothing logs in: zero, so the panel shows it.
            let (logins, renewals) = read(&sources().tokens).map_or((0, 0), |source| source());
            observer.observe(logins, &[KeyValue::new("rotator.token.operation", "login")]);
            observer.observe(
                renewals,
                &[KeyValue::new("rotator.token.operation", "renewal")],
            );
        })
        .build();
    meter
        .u64_observable_gauge("rotator.outbox.depth")
        .with_description("Events waiting in the outbox for a JetStream ack")
        .with_unit("{event}")
        .with_callback(|observer| {
            observer.observe(outbox_stats().unwrap_or_default().depth, &[]);
        })
        .build();
    meter
        .f64_observable_gauge("rotator.outbox.oldest_age")
        .with_description("Age of the oldest unpublished event; 0 when the outbox is empty")
        .with_unit("s")
        .with_callback(|observer| {
            let age = outbox_stats()
                .unwrap_or_default()
                .oldest_age
                .unwrap_or_default();
            observer.observe(age.as_secs_f64(), &[]);
        })
        .build();
    meter
        .u64_observable_gauge("rotator.events.relay_leader")
        .with_description(
            "1 while this replica's relay publishes the outbox (holds the relay lease)",
        )
        .with_callback(|observer| {
            observer.observe(RELAY_LEADER.load(std::sync::atomic::Ordering::Relaxed), &[]);
        })
        .build();
    meter
        .u64_observable_gauge("rotator.rotations.overdue")
        .with_description("Rotations whose next rotation time has passed")
        .with_unit("{rotation}")
        .with_callback(|observer| {
            // Without local rotations there is no scheduler and nothing is overdue.
            observer.observe(read(&sources().overdue).map_or(0, |source| source()), &[]);
        })
        .build();
}

fn read<T: Clone>(slot: &RwLock<Option<T>>) -> Option<T> {
    slot.read().ok().and_then(|guard| guard.clone())
}

fn write<T>(slot: &RwLock<Option<T>>, value: T) {
    if let Ok(mut guard) = slot.write() {
        *guard = Some(value);
    }
}

// === recording ===

/// Records one finished rotation attempt. `error_type` is the failure's `ErrorInfo.reason`.
pub fn rotation_finished(
    rotation_type: &'static str,
    backend: &'static str,
    outcome: Outcome,
    error_type: Option<&'static str>,
    duration: Duration,
) {
    let m = global();
    let mut attrs = vec![
        KeyValue::new("rotator.rotation_type", rotation_type),
        KeyValue::new("rotator.backend", backend),
        KeyValue::new(
            "rotator.outcome",
            match outcome {
                Outcome::Success => "success",
                Outcome::Failure => "failure",
            },
        ),
    ];
    if let Some(reason) = error_type {
        attrs.push(KeyValue::new("error.type", reason));
    }
    m.rotations.add(1, &attrs);
    m.rotation_duration.record(duration.as_secs_f64(), &attrs);
}

/// Creates the rotation counter's series at zero for each of these types, with outcome
/// `success` and `failure` (no backend label: which backend serves a rotation is known only when
/// it is asked for), so per-type and error-ratio panels have a series before the first rotation.
pub fn seed_rotation_types(slugs: impl IntoIterator<Item = &'static str>) {
    let rotations = &global().rotations;
    for slug in slugs {
        for outcome in ["success", "failure"] {
            rotations.add(
                0,
                &[
                    KeyValue::new("rotator.rotation_type", slug),
                    KeyValue::new("rotator.outcome", outcome),
                ],
            );
        }
    }
}

/// Records one finished gRPC call.
pub fn rpc_finished(
    service: &'static str,
    method: &'static str,
    code: tonic::Code,
    duration: Duration,
) {
    global().rpc_duration.record(
        duration.as_secs_f64(),
        &[
            KeyValue::new("rpc.system", "grpc"),
            KeyValue::new("rpc.service", service),
            KeyValue::new("rpc.method", method),
            KeyValue::new("rpc.grpc.status_code", code as i64),
        ],
    );
}

/// Counts one call in flight until the guard is dropped (also when the call is cancelled).
pub fn call_started(method: &'static str) -> ActiveCall {
    let attrs = [KeyValue::new("rpc.method", method)];
    global().rpc_active.add(1, &attrs);
    ActiveCall { attrs }
}

/// A call counted in `rotator.rpc.active_calls`.
#[derive(Debug)]
pub struct ActiveCall {
    attrs: [KeyValue; 1],
}

impl Drop for ActiveCall {
    fn drop(&mut self) {
        global().rpc_active.add(-1, &self.attrs);
    }
}

/// Records one upstream HTTP request: its status, or the kind of failure when none came back.
pub fn upstream_request_finished(
    method: &str,
    server_address: &str,
    status: Option<u16>,
    error_type: Option<&'static str>,
    duration: Duration,
) {
    let mut attrs = vec![
        KeyValue::new("http.request.method", method.to_owned()),
        KeyValue::new("server.address", server_address.to_owned()),
    ];
    if let Some(status) = status {
        attrs.push(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
    }
    if let Some(error_type) = error_type {
        attrs.push(KeyValue::new("error.type", error_type));
    }
    global()
        .upstream_duration
        .record(duration.as_secs_f64(), &attrs);
}

/// Counts one event acknowledged by JetStream.
pub fn event_published(event_type: &'static str) {
    global()
        .published
        .add(1, &[KeyValue::new("rotator.event_type", event_type)]);
}

/// Counts one failed publish attempt; `error_type` is a short, bounded kind (e.g. `timeout`,
/// `no_responders`, `connection`), never an error text.
pub fn publish_failed(error_type: &'static str) {
    global()
        .publish_failures
        .add(1, &[KeyValue::new("error.type", error_type)]);
}

/// Counts unpublished events deleted for want of NATS (`events.unpublished_cap_without_nats`).
pub fn events_discarded(count: u64) {
    global().discarded.add(count, &[]);
}

/// Counts one lease taken over from an expired holder.
pub fn lease_taken_over() {
    global().lease_takeovers.add(1, &[]);
}

/// Records whether this replica's relay holds the relay lease.
pub fn set_relay_leader(leader: bool) {
    RELAY_LEADER.store(u64::from(leader), std::sync::atomic::Ordering::Relaxed);
}

/// Counts one try to deliver a version to a sink: `outcome` is `delivered` or `failed`.
pub fn delivery_tried(sink_kind: &'static str, outcome: &'static str) {
    global().deliveries.add(
        1,
        &[
            KeyValue::new("sink_kind", sink_kind),
            KeyValue::new("outcome", outcome),
        ],
    );
}

/// Counts one committed version whose handover grace ended with consumers unconfirmed.
pub fn handover_grace_expired(rotation_type: &'static str) {
    global()
        .handover_grace_expired
        .add(1, &[KeyValue::new("rotator.rotation_type", rotation_type)]);
}

// === sources ===

/// Registers the outbox's depth and oldest age, read at each collection. Replaces an earlier
/// source. The callback must be cheap and must not block (keep the numbers in atomics that the
/// relay updates).
///
/// # Examples
///
/// ```no_run
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use rotator::telemetry::metrics::{self, OutboxStats};
///
/// let depth = Arc::new(AtomicU64::new(0));
/// let seen = Arc::clone(&depth);
/// metrics::set_outbox_source(move || OutboxStats {
///     depth: seen.load(Ordering::Relaxed),
///     oldest_age: None,
/// });
/// ```
pub fn set_outbox_source(source: impl Fn() -> OutboxStats + Send + Sync + 'static) {
    write(&sources().outbox, Arc::new(source) as OutboxSource);
}

/// The outbox depth and oldest age from the registered source; `None` before the events
/// pipeline registered one.
pub fn outbox_stats() -> Option<OutboxStats> {
    read(&sources().outbox).map(|source| source())
}

/// The overdue-rotation count from the registered source; `None` without a local scheduler.
pub fn overdue_rotations() -> Option<u64> {
    read(&sources().overdue).map(|source| source())
}

/// Registers the count of overdue rotations (the scheduler's view), read at each collection.
pub fn set_overdue_source(source: impl Fn() -> u64 + Send + Sync + 'static) {
    write(&sources().overdue, Arc::new(source) as CountSource);
}

/// Registers the Infisical token manager's (logins, renewals) counts.
pub fn set_token_source(source: impl Fn() -> (u64, u64) + Send + Sync + 'static) {
    write(&sources().tokens, Arc::new(source) as TokenSource);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_names_follow_prometheus_conventions() {
        let m = Metrics::build(Resource::builder_empty().build(), None);
        m.rotations
            .add(1, &[KeyValue::new("rotator.outcome", "success")]);
        m.rotation_duration.record(0.3, &[]);
        m.rpc_active.add(1, &[]);
        let text = m.render_prometheus();
        assert!(
            text.contains("# TYPE rotator_rotations_total counter"),
            "{text}"
        );
        assert!(text.contains("rotator_rotations_total{rotator_outcome=\"success\"} 1"));
        assert!(text.contains("# TYPE rotator_rotation_duration_seconds histogram"));
        assert!(text.contains("rotator_rotation_duration_seconds_bucket{le=\"0.5\"} 1"));
        assert!(text.contains("# TYPE rotator_rpc_active_calls gauge"));
    }

    #[test]
    fn histograms_without_recordings_render_empty_and_recorded_ones_once() {
        let m = Metrics::build(Resource::builder_empty().build(), None);
        m.rotation_duration.record(0.3, &[]);
        let text = m.render_prometheus();
        assert_eq!(
            text.matches("# TYPE rotator_rotation_duration_seconds histogram")
                .count(),
            1,
            "{text}"
        );
        assert!(text.contains("rotator_rotation_duration_seconds_count 1"));
        assert!(text.contains("# TYPE rpc_server_call_duration_seconds histogram"));
        assert!(text.contains("rpc_server_call_duration_seconds_bucket{le=\"0.005\"} 0"));
        assert!(text.contains("rpc_server_call_duration_seconds_bucket{le=\"+Inf\"} 0"));
        assert!(text.contains("http_client_request_duration_seconds_count 0"));
        assert!(text.contains("rotator_lease_takeovers_total 0"), "{text}");
        assert!(text.contains("rotator_outbox_depth 0"), "{text}");
    }
}
