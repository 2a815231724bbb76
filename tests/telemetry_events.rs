//! The caller's trace through the events pipeline: a RotateSecrets call with a W3C traceparent,
//! forwarded to the fake Infisical, its event appended to the outbox inside the rotation's span,
//! and published by the relay to JetStream (the shared NATS on 127.0.0.1:4222) under a producer
//! span of the same trace. The spans go to an OTLP collector inside the test.

use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use rotator::config::{Config, LogFormat};
use rotator::proto::{RotateSecretsRequest, RotationType};
use rotator::telemetry::Telemetry;
use rotator_testkit::events::{
    EventsServer, SHARED_NATS, delete_stream, header, nats_env, unique_names,
};
use rotator_testkit::fake_infisical::{CLIENT_ID, CLIENT_SECRET, FakeInfisical};
use rotator_testkit::log_lines::LogCapture;
use rotator_testkit::otlp::OtlpCollector;
use rotator_testkit::rotator_server::forwarding_env;
use rotator_testkit::{events, otlp, prometheus};

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn the_callers_trace_reaches_the_nats_message_through_a_producer_span() {
    let collector = OtlpCollector::start_grpc().await;
    let fake = FakeInfisical::start().await;
    let names = unique_names();
    let mut env = forwarding_env(&fake.base_url(), CLIENT_ID, CLIENT_SECRET);
    env.extend(nats_env(SHARED_NATS, &names));
    for (k, v) in [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint().as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_METRICS_EXPORTER", "none"),
    ] {
        env.insert(k.to_owned(), v.to_owned());
    }
    let config = Config::load(None, &env).expect("valid");
    let (dispatch, telemetry) = Telemetry::builder(&config.telemetry, LogFormat::Json)
        .with_writer(LogCapture::default())
        .build()
        .expect("telemetry builds");
    let _default = tracing::dispatcher::set_default(&dispatch);
    let server = EventsServer::start(env).await;

    let id = fake.rotation_id("postgres-credentials");
    let mut request = tonic::Request::new(RotateSecretsRequest {
        r#type: RotationType::PostgresCredentials as i32,
        rotation_id: id.to_string(),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")
            .parse()
            .expect("ascii"),
    );
    request
        .metadata_mut()
        .insert("x-request-id", "events-trace-1".parse().expect("ascii"));
    server
        .client()
        .await
        .rotate_secrets(request)
        .await
        .expect("rotation succeeds");
    let messages =
        events::wait_for_messages(SHARED_NATS, &names.stream, 1, Duration::from_secs(30)).await;
    // The rotation span ends when its task does, which may be a moment after the answer:
    // flush until it has reached the collector.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let spans = loop {
        telemetry.flush().await;
        let spans = collector.spans();
        let ended = |name: &str| spans.iter().any(|s| s.span.name == name);
        if ended("rotate postgres-credentials")
            && ended("rotator.v1.SecretRotationService/RotateSecrets")
            || tokio::time::Instant::now() > deadline
        {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    server.shutdown().await;
    delete_stream(SHARED_NATS, &names.stream).await;

    let rotation = spans
        .iter()
        .find(|s| s.span.name == "rotate postgres-credentials")
        .unwrap_or_else(|| panic!("no rotation span among {:?}", names_of(&spans)));
    let producer = spans
        .iter()
        .find(|s| s.kind() == SpanKind::Producer)
        .unwrap_or_else(|| panic!("no producer span among {:?}", names_of(&spans)));
    let subject = format!("{}.postgres-credentials.completed", names.prefix);

    // The publish joins the caller's trace under the rotation that wrote the event, and links
    // to it.
    assert_eq!(producer.trace_id(), CALLER_TRACE);
    assert_eq!(producer.parent_id(), rotation.span_id());
    assert_eq!(producer.span.name, format!("publish {subject}"));
    assert_eq!(
        producer.span.links.first().map(|l| otlp::hex(&l.span_id)),
        Some(rotation.span_id())
    );
    assert_eq!(producer.attr("messaging.system"), "nats");
    assert_eq!(producer.attr("messaging.destination.name"), subject);
    assert_eq!(producer.attr("rotator.request_id"), "events-trace-1");
    assert!(!producer.is_error());

    // The message names the producer span; its CloudEvent names the rotation that caused it.
    let message = &messages[0];
    assert_eq!(
        header(message, "traceparent"),
        Some(format!("00-{CALLER_TRACE}-{}-01", producer.span_id()).as_str())
    );
    assert_eq!(
        producer.attr("messaging.message.id"),
        header(message, "Nats-Msg-Id").expect("id")
    );
    let event =
        rotator::events::cloudevent::CloudEvent::from_bytes(&message.payload).expect("event");
    assert_eq!(
        event.traceparent.as_deref(),
        Some(format!("00-{CALLER_TRACE}-{}-01", rotation.span_id()).as_str())
    );

    // The outbox append is a store transaction of the rotation.
    let append = spans
        .iter()
        .find(|s| s.span.name == "append outbox event")
        .expect("outbox append span");
    assert_eq!(append.parent_id(), rotation.span_id());
    assert_eq!(append.attr("db.system.name"), "sqlite");
    assert_eq!(append.attr("rotator.request_id"), "events-trace-1");

    // The relay counted the publish; the outbox gauges are fed.
    let m =
        prometheus::Exposition::parse(&rotator::telemetry::metrics::global().render_prometheus());
    assert!(
        m.value(
            "rotator_events_published_total",
            &[("rotator_event_type", "completed")]
        ) >= 1.0
    );
    assert_eq!(m.types["rotator_outbox_depth"], "gauge");
    assert_eq!(m.types["rotator_outbox_oldest_age_seconds"], "gauge");
}

fn names_of(spans: &[otlp::CollectedSpan]) -> Vec<String> {
    spans.iter().map(|s| s.span.name.clone()).collect()
}
