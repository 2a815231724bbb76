//! Traces end to end: a caller with a W3C `traceparent` calls the real rotator gRPC server,
//! which forwards to the fake Infisical and exports its spans over OTLP to a collector inside the
//! test. Asserts the span tree, the attributes, propagation to the upstream's request headers,
//! failures, and that no secret reaches a span, an event or a log line.
//!
//! Each test installs its own subscriber for its own (current-thread) runtime, so tests run in
//! parallel without sharing a tracer.

use std::collections::HashMap;

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use rotator::config::{Config, Env, LogFormat};
use rotator::proto::{GetGeneratedCredentialsRequest, RotateSecretsRequest, RotationType};
use rotator::telemetry::Telemetry;
use rotator_testkit::fake_infisical::{CLIENT_ID, CLIENT_SECRET, FakeInfisical};
use rotator_testkit::log_lines::LogCapture;
use rotator_testkit::otlp;
use rotator_testkit::otlp::{CollectedSpan, OtlpCollector};
use rotator_testkit::rotator_server::{TestServer, forwarding_env};
use serde_json::Value;
use uuid::Uuid;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const RPC_ROTATE: &str = "rotator.v1.SecretRotationService/RotateSecrets";

/// A collector, a fake Infisical and a rotator server, with telemetry installed for this test.
struct Traced {
    collector: OtlpCollector,
    fake: FakeInfisical,
    server: TestServer,
    telemetry: Telemetry,
    logs: LogCapture,
    _default: tracing::dispatcher::DefaultGuard,
}

impl Traced {
    async fn start(collector: OtlpCollector, extra: &[(&str, &str)]) -> Self {
        let fake = FakeInfisical::start().await;
        let mut env: Env = forwarding_env(&fake.base_url(), CLIENT_ID, CLIENT_SECRET);
        env.extend(
            [
                ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint().as_str()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", collector.protocol()),
                ("OTEL_SERVICE_NAME", "rotator-under-test"),
                ("OTEL_METRICS_EXPORTER", "none"),
                ("RUST_LOG", "info"),
            ]
            .into_iter()
            .chain(extra.iter().copied())
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        let config = Config::load(None, &env).expect("valid test config");
        let logs = LogCapture::default();
        let (dispatch, telemetry) = Telemetry::builder(&config.telemetry, LogFormat::Json)
            .with_writer(logs.clone())
            .build()
            .expect("telemetry builds");
        assert!(telemetry.exports_traces());
        let default = tracing::dispatcher::set_default(&dispatch);
        let server = TestServer::start(env).await;
        Self {
            collector,
            fake,
            server,
            telemetry,
            logs,
            _default: default,
        }
    }

    /// Flushes the span queue (the export has reached the collector when this returns).
    async fn spans(&self) -> Vec<CollectedSpan> {
        self.telemetry.flush().await;
        self.collector.spans()
    }
}

fn rotate(
    id: Uuid,
    traceparent: Option<&str>,
    request_id: &str,
) -> tonic::Request<RotateSecretsRequest> {
    let mut request = tonic::Request::new(RotateSecretsRequest {
        r#type: RotationType::PostgresCredentials as i32,
        rotation_id: id.to_string(),
    });
    if let Some(tp) = traceparent {
        request
            .metadata_mut()
            .insert("traceparent", tp.parse().expect("ascii"));
    }
    request
        .metadata_mut()
        .insert("x-request-id", request_id.parse().expect("ascii"));
    request
}

fn caller_traceparent() -> String {
    format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")
}

fn one<'a>(
    spans: &'a [CollectedSpan],
    what: &str,
    pick: impl Fn(&CollectedSpan) -> bool,
) -> &'a CollectedSpan {
    let found: Vec<_> = spans.iter().filter(|s| pick(s)).collect();
    let summary: Vec<String> = spans
        .iter()
        .map(|s| {
            format!(
                "{} {:?} {} <- {} {:?}",
                s.span.name,
                s.kind(),
                s.span_id(),
                s.parent_id(),
                s.attrs()
            )
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {what}, got {}: {summary:#?}",
        found.len()
    );
    found[0]
}

fn by_id(spans: &[CollectedSpan]) -> HashMap<String, &CollectedSpan> {
    spans.iter().map(|s| (s.span_id(), s)).collect()
}

/// The W3C traceparent the fake received on its most recent resource request.
fn upstream_traceparent(fake: &FakeInfisical) -> Option<(String, String, String)> {
    let headers = fake.last_request_headers();
    let value = headers.iter().find(|(k, _)| k == "traceparent")?.1.clone();
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "malformed traceparent {value}");
    Some((
        parts[1].to_owned(),
        parts[2].to_owned(),
        parts[3].to_owned(),
    ))
}

#[tokio::test]
async fn a_rotation_is_one_trace_from_the_caller_through_the_upstream_request() {
    let t = Traced::start(OtlpCollector::start_grpc().await, &[]).await;
    let id = t.fake.rotation_id("postgres-credentials");
    let mut client = t.server.client().await;
    client
        .rotate_secrets(rotate(id, Some(&caller_traceparent()), "trace-test-1"))
        .await
        .expect("rotation succeeds");
    let spans = t.spans().await;

    // The server span continues the caller's trace, as a child of the caller's span.
    let server = one(&spans, "server span", |s| s.span.name == RPC_ROTATE);
    assert_eq!(server.kind(), SpanKind::Server);
    assert_eq!(server.trace_id(), CALLER_TRACE);
    assert_eq!(server.parent_id(), CALLER_SPAN);
    for (key, value) in [
        ("rpc.system", "grpc"),
        ("rpc.service", "rotator.v1.SecretRotationService"),
        ("rpc.method", "RotateSecrets"),
        ("rpc.grpc.status_code", "0"),
        ("rotator.request_id", "trace-test-1"),
        ("rotator.rotation_type", "postgres-credentials"),
    ] {
        assert_eq!(server.attr(key), value, "server span {key}");
    }
    assert_eq!(server.attr("rotator.rotation_id"), id.to_string());
    assert_eq!(server.int_attr("rpc.grpc.status_code"), 0);
    assert!(!server.is_error());
    assert_eq!(server.resource["service.name"], "rotator-under-test");

    // The rotation attempt is a child of the server span.
    let rotation = one(&spans, "rotation span", |s| {
        s.span.name == "rotate postgres-credentials"
    });
    assert_eq!(rotation.parent_id(), server.span_id());
    assert_eq!(rotation.attr("rotator.outcome"), "success");
    assert_eq!(rotation.attr("rotator.backend"), "forwarded");
    assert_eq!(rotation.attr("rotator.request_id"), "trace-test-1");

    // One client span per upstream request (login, then rotate), under the rotation span.
    let clients: Vec<_> = spans
        .iter()
        .filter(|s| s.kind() == SpanKind::Client)
        .collect();
    let rotate_url = format!(
        "{}/api/v2/secret-rotations/postgres-credentials/{id}/rotate-secrets",
        t.fake.base_url()
    );
    let upstream = one(&spans, "rotate client span", |s| {
        s.kind() == SpanKind::Client && s.attrs().get("url.full") == Some(&rotate_url)
    });
    assert_eq!(upstream.span.name, "POST");
    assert_eq!(upstream.attr("http.request.method"), "POST");
    assert_eq!(upstream.attr("http.response.status_code"), "200");
    assert_eq!(upstream.attr("server.address"), "127.0.0.1");
    assert_eq!(upstream.int_attr("http.response.status_code"), 200);
    assert!(upstream.int_attr("server.port") > 0);
    assert_eq!(upstream.attr("rotator.request_id"), "trace-test-1");
    assert_eq!(upstream.parent_id(), rotation.span_id());
    assert!(
        clients.iter().any(|c| c
            .attr("url.full")
            .ends_with("/api/v1/auth/universal-auth/login")),
        "the login is traced too"
    );
    for span in &clients {
        assert_eq!(span.trace_id(), CALLER_TRACE);
        assert_eq!(span.attr("rotator.request_id"), "trace-test-1");
    }

    // The upstream saw the caller's trace id, with our client span as its parent.
    let (trace, parent, flags) = upstream_traceparent(&t.fake).expect("traceparent sent upstream");
    assert_eq!(trace, CALLER_TRACE);
    assert_eq!(parent, upstream.span_id());
    assert_eq!(flags, "01");

    // Each attribute appears once per span (explicit and inherited request ids are merged).
    let ids = by_id(&spans);
    for span in ids.values() {
        let mut keys: Vec<_> = span.span.attributes.iter().map(|kv| &kv.key).collect();
        let total = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(
            keys.len(),
            total,
            "repeated attribute on {}",
            span.span.name
        );
    }
    t.server.shutdown().await;
}

#[tokio::test]
async fn a_failed_rotation_marks_every_span_on_its_path_and_logs_carry_the_trace() {
    let t = Traced::start(OtlpCollector::start_grpc().await, &[]).await;
    let id = t.fake.rotation_id("postgres-credentials");
    t.fake
        .fail_next_rotation(id, "the database refused the connection");
    let mut client = t.server.client().await;
    let status = client
        .rotate_secrets(rotate(id, Some(&caller_traceparent()), "trace-test-fail"))
        .await
        .expect_err("the provider failed");
    assert_eq!(status.code(), tonic::Code::Internal);
    let spans = t.spans().await;

    let upstream = one(&spans, "failed rotate request", |s| {
        s.kind() == SpanKind::Client && s.attr("url.full").ends_with("/rotate-secrets")
    });
    assert_eq!(upstream.attr("http.response.status_code"), "500");
    assert_eq!(upstream.attr("error.type"), "500");
    assert!(upstream.is_error());
    let req_id = upstream.attr("infisical.req_id");
    assert!(
        req_id.starts_with("req-"),
        "Infisical's reqId recorded: {req_id}"
    );
    let exception = &upstream.events("exception")[0];
    assert!(exception["exception.message"].contains("the database refused the connection"));

    let rotation = one(&spans, "rotation span", |s| {
        s.span.name.starts_with("rotate ")
    });
    assert!(rotation.is_error());
    assert_eq!(rotation.attr("rotator.outcome"), "failure");
    assert_eq!(rotation.attr("error.type"), "UPSTREAM_ROTATION_FAILED");
    assert_eq!(
        rotation.events("exception")[0]["exception.type"],
        "UPSTREAM_ROTATION_FAILED"
    );

    let server = one(&spans, "server span", |s| s.span.name == RPC_ROTATE);
    assert_eq!(server.attr("rpc.grpc.status_code"), "13");
    assert!(server.is_error(), "INTERNAL is a server fault");
    assert_eq!(server.events("exception").len(), 1);

    // The "call failed" log line joins the call and its trace.
    let lines = t.logs.json_lines();
    let failed = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("call failed"))
        })
        .unwrap_or_else(|| panic!("no call-failed line in {lines:#?}"));
    assert_eq!(failed["request_id"], "trace-test-fail");
    assert_eq!(failed["rotation_id"], id.to_string());
    assert_eq!(failed["trace_id"], CALLER_TRACE);
    assert_eq!(failed["span_id"], Value::String(server.span_id()));
    assert_eq!(failed["level"], "INFO");
    t.server.shutdown().await;
}

#[tokio::test]
async fn caller_errors_keep_their_code_but_do_not_mark_the_server_span_failed() {
    let t = Traced::start(OtlpCollector::start_grpc().await, &[]).await;
    let mut client = t.server.client().await;
    let status = client
        .rotate_secrets(tonic::Request::new(RotateSecretsRequest {
            r#type: RotationType::PostgresCredentials as i32,
            rotation_id: "not-a-uuid".into(),
        }))
        .await
        .expect_err("invalid id");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let spans = t.spans().await;
    let server = one(&spans, "server span", |s| s.span.name == RPC_ROTATE);
    assert_eq!(server.attr("rpc.grpc.status_code"), "3");
    assert_eq!(server.attr("error.type"), "INVALID_ROTATION_ID");
    assert!(!server.is_error(), "INVALID_ARGUMENT is the caller's fault");
    assert_eq!(server.events("exception").len(), 1);
    assert!(server.parent_id().is_empty(), "no traceparent: a new trace");
    // The generated request id is on the span even though the call never reached the engine.
    assert!(!server.attr("rotator.request_id").is_empty());
    t.server.shutdown().await;
}

#[tokio::test]
async fn an_unsampled_caller_is_not_exported_but_its_trace_still_reaches_the_upstream() {
    let t = Traced::start(OtlpCollector::start_grpc().await, &[]).await;
    let id = t.fake.rotation_id("postgres-credentials");
    let mut client = t.server.client().await;
    let unsampled = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-00");
    client
        .rotate_secrets(rotate(id, Some(&unsampled), "trace-test-unsampled"))
        .await
        .expect("rotation succeeds");
    let spans = t.spans().await;
    assert!(
        spans.is_empty(),
        "parentbased sampler follows the caller: {spans:#?}"
    );
    let (trace, _, flags) = upstream_traceparent(&t.fake).expect("still propagated");
    assert_eq!(trace, CALLER_TRACE);
    assert_eq!(flags, "00");
    t.server.shutdown().await;
}

#[tokio::test]
async fn spans_are_exported_over_otlp_http_protobuf_too() {
    let t = Traced::start(OtlpCollector::start_http().await, &[]).await;
    let id = t.fake.rotation_id("postgres-credentials");
    let mut client = t.server.client().await;
    client
        .rotate_secrets(rotate(id, Some(&caller_traceparent()), "trace-test-http"))
        .await
        .expect("rotation succeeds");
    let spans = t.spans().await;
    let server = one(&spans, "server span", |s| s.span.name == RPC_ROTATE);
    assert_eq!(server.trace_id(), CALLER_TRACE);
    assert!(spans.iter().any(|s| s.kind() == SpanKind::Client));
    t.server.shutdown().await;
}

#[tokio::test]
async fn no_token_client_secret_or_generated_secret_reaches_a_span_an_event_or_a_log_line() {
    let t = Traced::start(
        OtlpCollector::start_grpc().await,
        &[("RUST_LOG", "debug")], // the most verbose level an operator might turn on
    )
    .await;
    let id = t.fake.rotation_id("postgres-credentials");
    let mut client = t.server.client().await;
    client
        .rotate_secrets(rotate(
            id,
            Some(&caller_traceparent()),
            "trace-test-secrets",
        ))
        .await
        .expect("rotation succeeds");
    let credentials = client
        .get_generated_credentials(GetGeneratedCredentialsRequest {
            r#type: RotationType::PostgresCredentials as i32,
            rotation_id: id.to_string(),
        })
        .await
        .expect("credentials")
        .into_inner();
    assert!(!credentials.generated_credentials.is_empty());
    t.fake.fail_next_rotation(id, "provider said no");
    let _ = client
        .rotate_secrets(rotate(id, None, "trace-test-secrets-2"))
        .await;
    let spans = t.spans().await;

    let mut secrets = vec![CLIENT_SECRET.to_owned()];
    // Every bearer token the fake saw.
    for request in t.fake.requests() {
        for (name, value) in &request.headers {
            if name == "authorization" {
                secrets.push(value.trim_start_matches("Bearer ").to_owned());
            }
        }
    }
    // Every generated password (the fake's view of what rotator returned to the caller).
    let generated = t.fake.generated_credentials_json(id);
    for credential in generated["generatedCredentials"]
        .as_array()
        .expect("credentials array")
    {
        secrets.push(
            credential["password"]
                .as_str()
                .expect("postgres credential has a password")
                .to_owned(),
        );
    }
    assert!(
        secrets.len() >= 4,
        "client secret, a token and two passwords"
    );

    let span_text: Vec<String> = spans.iter().flat_map(CollectedSpan::all_text).collect();
    let log_text = t.logs.text();
    assert!(!span_text.is_empty() && !log_text.is_empty());
    for secret in &secrets {
        assert!(secret.len() >= 8, "a real secret, not a fragment");
        for text in &span_text {
            assert!(
                !text.contains(secret.as_str()),
                "a secret in a span: {text}"
            );
        }
        assert!(!log_text.contains(secret.as_str()), "a secret in the logs");
    }
    t.server.shutdown().await;
}

#[tokio::test]
async fn a_dead_collector_never_fails_a_rotation() {
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    }; // closed again: connections are refused
    let fake = FakeInfisical::start().await;
    let mut env = forwarding_env(&fake.base_url(), CLIENT_ID, CLIENT_SECRET);
    env.insert(
        "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
        format!("http://{dead}"),
    );
    env.insert("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "grpc".into());
    env.insert("OTEL_EXPORTER_OTLP_TIMEOUT".into(), "200".into());
    env.insert("OTEL_BSP_SCHEDULE_DELAY".into(), "10".into());
    env.insert("OTEL_METRICS_EXPORTER".into(), "none".into());
    let config = Config::load(None, &env).expect("valid");
    let (dispatch, telemetry) = Telemetry::builder(&config.telemetry, LogFormat::Json)
        .with_writer(LogCapture::default())
        .build()
        .expect("builds: the collector is not contacted at start");
    let _default = tracing::dispatcher::set_default(&dispatch);
    let server = TestServer::start(env).await;
    let mut client = server.client().await;
    let id = fake.rotation_id("postgres-credentials");
    for n in 0..20 {
        client
            .rotate_secrets(rotate(
                id,
                Some(&caller_traceparent()),
                &format!("dead-{n}"),
            ))
            .await
            .expect("rotations succeed while the collector is down");
    }
    server.shutdown().await;
    telemetry
        .shutdown(std::time::Duration::from_millis(500))
        .await;
}

/// Telemetry exporting to `collector`, without a server (for the span helpers used by later
/// components: the events relay, drivers and stores).
fn telemetry_for(collector: &OtlpCollector) -> (tracing::Dispatch, Telemetry) {
    let env: Env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint()),
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            collector.protocol().to_owned(),
        ),
        ("OTEL_METRICS_EXPORTER", "none".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = Config::load(None, &env).expect("valid");
    Telemetry::builder(&config.telemetry, LogFormat::Json)
        .with_writer(LogCapture::default())
        .build()
        .expect("telemetry builds")
}

#[tokio::test]
async fn a_late_publish_joins_the_stored_trace_and_links_to_it() {
    use rotator::proto::{Backend, Trigger};
    use rotator::telemetry::{current_trace_headers, inject_headers, producer_span, spans};

    let collector = OtlpCollector::start_grpc().await;
    let (dispatch, telemetry) = telemetry_for(&collector);
    let _default = tracing::dispatcher::set_default(&dispatch);

    // The engine stores the trace context with the outbox row while the rotation runs...
    let rotation = spans::rotation(
        RotationType::PostgresCredentials,
        "3f0c5a0e-8d4b-4d1e-9a43-2b8f4c1d7e60",
        Backend::Forwarded,
        Trigger::Manual,
        "req-outbox",
    );
    let stored = rotation.in_scope(current_trace_headers);
    drop(rotation);
    assert!(stored.iter().any(|(k, _)| k == "traceparent"), "{stored:?}");

    // ...and the relay publishes later, from its own task, outside any call.
    let subject = "rotator.events.postgres-credentials.completed";
    let publish = producer_span(subject, "evt-1", "req-outbox", &stored);
    let message_headers = inject_headers(&publish);
    drop(publish);
    telemetry.flush().await;
    let spans = collector.spans();

    let origin = one(&spans, "rotation span", |s| {
        s.span.name.starts_with("rotate ")
    });
    let producer = one(&spans, "producer span", |s| s.kind() == SpanKind::Producer);
    assert_eq!(producer.span.name, format!("publish {subject}"));
    assert_eq!(
        producer.trace_id(),
        origin.trace_id(),
        "joins the stored trace"
    );
    assert_eq!(producer.parent_id(), origin.span_id());
    assert_eq!(producer.span.links.len(), 1);
    assert_eq!(otlp::hex(&producer.span.links[0].span_id), origin.span_id());
    for (key, value) in [
        ("messaging.system", "nats"),
        ("messaging.destination.name", subject),
        ("messaging.message.id", "evt-1"),
        ("messaging.operation.type", "send"),
        ("rotator.request_id", "req-outbox"),
    ] {
        assert_eq!(producer.attr(key), value, "producer span {key}");
    }
    // The NATS message names the producer span as the consumer's parent, in the same trace.
    let traceparent = &message_headers
        .iter()
        .find(|(k, _)| k == "traceparent")
        .expect("traceparent header for the message")
        .1;
    assert_eq!(
        traceparent,
        &format!("00-{}-{}-01", origin.trace_id(), producer.span_id())
    );
}

#[tokio::test]
async fn driver_and_store_spans_inherit_the_request_id_and_record_redacted_failures() {
    use rotator::proto::{Backend, Trigger};
    use rotator::telemetry::{driver_phase_span, record_error, spans, store_transaction_span};

    let collector = OtlpCollector::start_grpc().await;
    let (dispatch, telemetry) = telemetry_for(&collector);
    let _default = tracing::dispatcher::set_default(&dispatch);
    let rotation = spans::rotation(
        RotationType::PostgresCredentials,
        "3f0c5a0e-8d4b-4d1e-9a43-2b8f4c1d7e60",
        Backend::Local,
        Trigger::Scheduled,
        "req-local",
    );
    rotation.in_scope(|| {
        let apply = driver_phase_span("postgresql", "apply");
        record_error(
            &apply,
            "DRIVER_APPLY_FAILED",
            "ALTER ROLE failed: password=Sup3r-S3cret-Value rejected",
        );
        drop(apply);
        drop(store_transaction_span("sqlite", "commit attempt"));
    });
    drop(rotation);
    telemetry.flush().await;
    let spans = collector.spans();

    let apply = one(&spans, "driver phase", |s| {
        s.span.name == "apply postgresql"
    });
    assert_eq!(apply.kind(), SpanKind::Client);
    assert_eq!(apply.attr("db.system.name"), "postgresql");
    assert_eq!(
        apply.attr("rotator.request_id"),
        "req-local",
        "inherited from the rotation"
    );
    assert_eq!(apply.attr("error.type"), "DRIVER_APPLY_FAILED");
    assert!(apply.is_error());
    let message = &apply.events("exception")[0]["exception.message"];
    assert!(message.starts_with("ALTER ROLE failed"));
    assert!(
        !message.contains("Sup3r-S3cret-Value"),
        "redacted: {message}"
    );
    assert!(
        !apply
            .all_text()
            .iter()
            .any(|t| t.contains("Sup3r-S3cret-Value"))
    );

    let commit = one(&spans, "store transaction", |s| {
        s.span.name == "commit attempt"
    });
    assert_eq!(commit.attr("db.system.name"), "sqlite");
    assert_eq!(commit.attr("db.operation.name"), "commit attempt");
    assert_eq!(commit.attr("rotator.request_id"), "req-local");
    let rotation = one(&spans, "rotation", |s| s.span.name.starts_with("rotate "));
    assert_eq!(rotation.attr("rotator.trigger"), "scheduled");
    assert_eq!(rotation.attr("rotator.backend"), "local");
}
