//! Log lines without any OpenTelemetry exporter configured (the default): JSON objects that carry
//! the call's request id and rotation id, no trace ids, nothing propagated upstream, and a level
//! chosen by `RUST_LOG`.

use rotator::config::{Config, LogFormat};
use rotator::proto::{RotateSecretsRequest, RotationType};
use rotator::telemetry::Telemetry;
use rotator_testkit::fake_infisical::{CLIENT_ID, CLIENT_SECRET, FakeInfisical};
use rotator_testkit::log_lines::LogCapture;
use rotator_testkit::rotator_server::{TestServer, forwarding_env};
use serde_json::Value;

struct Logged {
    fake: FakeInfisical,
    server: TestServer,
    logs: LogCapture,
    telemetry: Telemetry,
    _default: tracing::dispatcher::DefaultGuard,
}

async fn logged(rust_log: &str) -> Logged {
    let fake = FakeInfisical::start().await;
    let mut env = forwarding_env(&fake.base_url(), CLIENT_ID, CLIENT_SECRET);
    env.insert("RUST_LOG".into(), rust_log.into());
    let config = Config::load(None, &env).expect("valid");
    let logs = LogCapture::default();
    let (dispatch, telemetry) = Telemetry::builder(&config.telemetry, LogFormat::Json)
        .with_writer(logs.clone())
        .build()
        .expect("telemetry builds");
    let default = tracing::dispatcher::set_default(&dispatch);
    let server = TestServer::start(env).await;
    Logged {
        fake,
        server,
        logs,
        telemetry,
        _default: default,
    }
}

/// A rotation that fails at the provider, from a caller that sent a traceparent.
async fn failing_rotation(l: &Logged, request_id: &str) -> uuid::Uuid {
    let id = l.fake.rotation_id("postgres-credentials");
    l.fake.fail_next_rotation(id, "the database is down");
    let mut request = tonic::Request::new(RotateSecretsRequest {
        r#type: RotationType::PostgresCredentials as i32,
        rotation_id: id.to_string(),
    });
    request.metadata_mut().insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .expect("ascii"),
    );
    request
        .metadata_mut()
        .insert("x-request-id", request_id.parse().expect("ascii"));
    let mut client = l.server.client().await;
    client
        .rotate_secrets(request)
        .await
        .expect_err("the provider fails");
    id
}

fn call_failed(lines: &[Value]) -> Option<&Value> {
    lines.iter().find(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("call failed"))
    })
}

#[tokio::test]
async fn without_an_exporter_lines_carry_request_ids_and_no_trace_is_made_up() {
    let l = logged("info").await;
    assert!(!l.telemetry.exports_traces());
    let id = failing_rotation(&l, "logs-test-1").await;
    let lines = l.logs.json_lines();
    for line in &lines {
        for field in ["timestamp", "level", "target", "message"] {
            assert!(line.get(field).is_some(), "{field} missing from {line}");
        }
    }
    let failed = call_failed(&lines).unwrap_or_else(|| panic!("no call-failed line: {lines:#?}"));
    assert_eq!(failed["request_id"], "logs-test-1");
    assert_eq!(failed["rotation_id"], id.to_string());
    assert_eq!(failed["reason"], "UPSTREAM_ROTATION_FAILED");
    assert_eq!(failed["span"], "rpc");
    assert!(
        failed.get("trace_id").is_none() && failed.get("span_id").is_none(),
        "no tracer: no trace ids, not even the caller's: {failed}"
    );
    assert!(
        !l.fake
            .last_request_headers()
            .iter()
            .any(|(k, _)| k == "traceparent" || k == "baggage"),
        "nothing propagated without a tracer"
    );
    assert!(rotator::telemetry::current_trace_headers().is_empty());
    l.server.shutdown().await;
}

#[tokio::test]
async fn rust_log_chooses_the_level() {
    let l = logged("warn").await;
    failing_rotation(&l, "logs-test-2").await;
    let lines = l.logs.json_lines();
    assert!(
        call_failed(&lines).is_none(),
        "INFO lines are off: {lines:#?}"
    );
    for line in &lines {
        assert!(
            matches!(line["level"].as_str(), Some("WARN" | "ERROR")),
            "{line}"
        );
    }
    l.server.shutdown().await;
}
